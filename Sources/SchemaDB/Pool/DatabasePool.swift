public import Logging
public import PostgresNIO
public import ServiceLifecycle
import Dispatch
import Synchronization

/// The one connection pool every schema-scoped handle shares.
///
/// A pool is either **owned**, created from a ``DatabaseConfig`` and run by you (``run()``, for
/// example in a `ServiceGroup`), or **borrowed**: the host application's `PostgresClient`, which
/// `SchemaDB` never runs or shuts down.
///
/// ```swift
/// try await DatabasePool.withPool(configuration: config, logger: logger) { pool in
///     let acme = try pool.database(schema: "acme")
///     let count = try await acme.fetchValue("SELECT count(*) FROM {{tables.users}}", as: Int.self)
/// }
/// ```
public final class DatabasePool: Service, Sendable {
    /// The postgres-nio client behind the pool.
    public let client: PostgresClient
    /// The configuration of an owned pool; `nil` for a borrowed one.
    public let configuration: DatabaseConfig?
    /// Whether this pool created its client (and so is the one to run it).
    public var isOwned: Bool { configuration != nil }

    let logger: Logger
    let instrumentation: QueryInstrumentation
    private let maximumConnections: Int?
    private let isRunning = Atomic<Bool>(false)
    /// The longest wait for a connection of the pool in transactions, ``SchemaDatabase/withConnection(_:)``
    /// and after a connection failure.
    public let leaseTimeout: Duration
    /// When a connection of this pool was last seen to fail, in `DispatchTime` nanoseconds; 0 for never.
    private let lastConnectionLoss = Atomic<UInt64>(0)
    /// How connection failures name the server, such as `placement "eu-2"`; `nil` names none.
    package let label: String?
    /// Whether every query leases its connection through ``withOpenConnection(_:)``, which
    /// fails within about a second when the server refuses connections, instead of
    /// postgres-nio's faster query path, which waits about a minute for a server that went
    /// away. For pools of servers that may be down while others serve (placements).
    package let leasesEveryQuery: Bool
    /// Run on each connection before its first use (see ``withOpenConnection(_:)``).
    private let connectionCheck: (@Sendable (SchemaDatabase) async throws -> Void)?
    /// The connections that passed ``connectionCheck``, until they close.
    private let checkedConnections = Mutex<Set<PostgresConnection.ID>>([])

    /// Creates an owned pool. It opens no connection until ``run()`` is running and a query is made.
    /// - Parameters:
    ///   - configuration: Where to connect, pool size and session timeouts.
    ///   - logger: Receives the pool's background messages and is the default for its handles.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration``.
    public convenience init(configuration: DatabaseConfig, logger: Logger) throws {
        try self.init(configuration: configuration, label: nil, logger: logger)
    }

    /// Creates an owned pool whose connection failures name `label`; with `leasesEveryQuery`
    /// (see ``leasesEveryQuery``). `checkingEachConnection` runs on every connection before its
    /// first use, on a handle bound to it; a connection it throws for is closed, and the query
    /// that leased it fails with ``SchemaDBError/Code/connectionFailed`` whose `underlying` is
    /// the check's error. It needs `leasesEveryQuery`.
    package init(configuration: DatabaseConfig, label: String?, leasesEveryQuery: Bool = false,
                 checkingEachConnection: (@Sendable (SchemaDatabase) async throws -> Void)? = nil, logger: Logger) throws {
        precondition(checkingEachConnection == nil || leasesEveryQuery, "a connection check needs every query to lease its connection")
        self.label = label
        self.leasesEveryQuery = leasesEveryQuery
        self.connectionCheck = checkingEachConnection
        self.client = PostgresClient(configuration: try configuration.makePostgresClientConfiguration(), backgroundLogger: logger)
        self.configuration = configuration
        self.logger = logger
        self.maximumConnections = configuration.maximumConnections
        self.instrumentation = QueryInstrumentation(slowQueryThreshold: configuration.slowQueryThreshold)
        self.leaseTimeout = configuration.leaseTimeout
    }

    /// Borrows the host application's client.
    ///
    /// - Important: `client` is owned by the caller, who must be running `client.run()`.
    /// - Parameters:
    ///   - client: The application's `PostgresClient`.
    ///   - maximumConnections: The client's connection limit, for ``statistics`` and for callers
    ///     that size their concurrency by it. `nil` when unknown.
    ///   - slowQueryThreshold: Queries slower than this are logged at `info` level.
    ///   - leaseTimeout: The longest wait for a connection (see ``leaseTimeout``). Defaults to 30 s.
    ///   - logger: The default logger of this pool's handles.
    public init(borrowing client: PostgresClient, maximumConnections: Int? = nil, slowQueryThreshold: Duration? = nil, leaseTimeout: Duration = .seconds(30), logger: Logger) {
        self.client = client
        self.leaseTimeout = leaseTimeout
        self.label = nil
        self.leasesEveryQuery = false
        self.connectionCheck = nil
        self.configuration = nil
        self.logger = logger
        self.maximumConnections = maximumConnections
        self.instrumentation = QueryInstrumentation(slowQueryThreshold: slowQueryThreshold)
    }

    /// Runs an owned pool until the task is cancelled or the service group shuts down, then
    /// closes its connections. For a borrowed pool it only waits: the host runs its own client.
    ///
    /// - Warning: Call it once.
    public func run() async {
        let (exchanged, _) = isRunning.compareExchange(expected: false, desired: true, ordering: .relaxed)
        precondition(exchanged, "DatabasePool.run() must be called only once")
        if isOwned {
            await client.run()
        } else {
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            }
        }
    }

    /// The counters of this pool since it was created.
    public var statistics: PoolStatistics { instrumentation.snapshot(maximumConnections: maximumConnections) }

    /// The pool's connection limit, when known.
    public var connectionLimit: Int? { maximumConnections }

    /// Records that a connection of this pool failed: for a while, queries lease their
    /// connection through ``withOpenConnection(_:)``.
    package func noteConnectionLoss() {
        lastConnectionLoss.store(max(1, DispatchTime.now().uptimeNanoseconds), ordering: .relaxed)
        servedSinceLoss.store(false, ordering: .relaxed)
    }

    /// Whether a leased connection answered since the last connection failure.
    private let servedSinceLoss = Atomic<Bool>(true)

    /// Whether a connection failed in the last 10 s, or failed and no connection has answered
    /// since: the pool may still hold (or be handed back) connections that closed, and its own
    /// queue would wait a minute for a server that is gone.
    package var isRecoveringFromConnectionLoss: Bool {
        let loss = lastConnectionLoss.load(ordering: .relaxed)
        guard loss != 0 else { return false }
        return !servedSinceLoss.load(ordering: .relaxed) || DispatchTime.now().uptimeNanoseconds &- loss < 10_000_000_000
    }

    /// Leases a connection for `body`, giving back any connection that is already closed.
    ///
    /// The pool can hand out a connection whose server went away a moment ago, before it has
    /// heard of the close; postgres-nio never answers a query written to such a connection,
    /// so it is never used. A connection on which foreign SQL ran (see ``markForeignSQL(on:)``)
    /// goes back to the pool only if that SQL left no session state behind; otherwise it is closed.
    package func withOpenConnection<Result>(_ body: (PostgresConnection) async throws -> sending Result) async throws -> sending Result {
        var closedLeases = 0
        while true {
            do {
                return try await withLeasedConnection { connection in
                    guard !connection.isClosed else { throw ClosedLease() }
                    try await checkOnFirstUse(connection)
                    do {
                        let result = try await body(connection)
                        servedSinceLoss.store(true, ordering: .relaxed)
                        await closeIfForeignSQLLeftState(on: connection)
                        return result
                    } catch {
                        await closeIfForeignSQLLeftState(on: connection)
                        throw error
                    }
                }
            } catch is ClosedLease {
                // The pool hears of a close a moment later; under load that can take a while.
                closedLeases += 1
                guard closedLeases <= 40 else {
                    throw SchemaDBError(code: .connectionFailed, message: "the pool kept handing out connections that had closed; the server went away")
                }
                try await Task.sleep(for: .milliseconds(min(5 * closedLeases, 100)))
            }
        }
    }

    private struct ClosedLease: Error {}

    /// Runs ``connectionCheck`` on `connection` unless it passed already; closes it when the
    /// check fails.
    private func checkOnFirstUse(_ connection: PostgresConnection) async throws {
        guard let connectionCheck, !checkedConnections.withLock({ $0.contains(connection.id) }) else { return }
        do {
            try await connectionCheck(SchemaDatabase(pool: self, schema: nil, logger: logger, scope: .connection(connection, transactionDepth: nil)))
        } catch {
            try? await connection.close()
            noteConnectionLoss()
            let reason = (error as? any CustomStringConvertible)?.description ?? "\(type(of: error))"
            throw SchemaDBError(code: .connectionFailed, message: "a new connection failed its check: \(reason)\(label.map { " (\($0))" } ?? "")", underlying: error)
        }
        let id = connection.id
        checkedConnections.withLock { _ = $0.insert(id) }
        connection.closeFuture.whenComplete { [weak self] _ in self?.checkedConnections.withLock { _ = $0.remove(id) } }
    }

    /// Runs `body` with a pooled connection, waiting for one at most ``leaseTimeout``, and less
    /// when the server refuses connections: after a second of waiting an owned pool checks the
    /// server itself and fails at once with the cause.
    private func withLeasedConnection<Result>(_ body: (PostgresConnection) async throws -> sending Result) async throws -> sending Result {
        let lease = ConnectionLease()
        let client = self.client
        let holder = Task {
            do {
                try await client.withConnection { connection in
                    if lease.resolve(.success(connection)) { await lease.waitUntilReleased() }
                }
            } catch {
                let failure = SchemaDBError.wrapping(error, sql: nil, schema: nil)
                if (failure as? SchemaDBError)?.code == .connectionFailed { self.noteConnectionLoss() }
                lease.resolve(.failure(failure))
            }
        }
        let timeout = leaseTimeout
        let timer = Task {
            // Check the server after a second of waiting, and again every few seconds.
            let deadline = ContinuousClock.now + timeout
            var pause = Duration.seconds(1)
            while ContinuousClock.now + pause < deadline {
                do { try await Task.sleep(for: pause) } catch { return }
                if let refusal = await self.serverRefusal() {
                    self.noteConnectionLoss()
                    if lease.resolve(.failure(refusal)) { holder.cancel() }
                    return
                }
                pause = min(pause * 2, .seconds(4))
            }
            do { try await Task.sleep(until: deadline) } catch { return }
            let waited = SchemaDBError(code: .connectionFailed, message: "no pooled connection within \(timeout): every connection is busy, or the server cannot be reached")
            if lease.resolve(.failure(waited)) { holder.cancel() }
        }
        defer { timer.cancel() }
        // A pool that is only busy is no connection loss: only a failure to connect is noted.
        let connection = try await withTaskCancellationHandler {
            try await lease.connection()
        } onCancel: {
            if lease.resolve(.failure(CancellationError())) { holder.cancel() }
        }
        defer { lease.release() }
        return try await body(connection)
    }

    /// The last check of the server by a waiting lease, so that waiters check at most once a second.
    private let lastServerCheck = Mutex<(at: ContinuousClock.Instant, refusal: SchemaDBError?)?>(nil)

    /// Why the server refuses connections, checked with a standalone connection; `nil` when it
    /// accepts them, or for a borrowed pool, which has no configuration to connect with.
    private func serverRefusal() async -> SchemaDBError? {
        guard let configuration else { return nil }
        let now = ContinuousClock.now
        if let last = lastServerCheck.withLock({ $0 }), now - last.at < .seconds(1) { return last.refusal }
        var refusal: SchemaDBError?
        do {
            let connection = try await PostgresConnection.connect(configuration: try configuration.makeConnectionConfiguration(), id: 0, logger: logger)
            try? await connection.close()
        } catch {
            // Only a clear refusal fails the waiters at once: a full or slow server is still there.
            if Self.isRefusal(error) { refusal = Self.connectionError(error, configuration: configuration) }
        }
        // A check cut short by its waiter's end says nothing about the server.
        guard !Task.isCancelled else { return nil }
        lastServerCheck.withLock { $0 = (ContinuousClock.now, refusal) }
        return refusal
    }

    /// Connections leased now on which SQL this library does not control (migration files) ran.
    private let connectionsRunningForeignSQL = Mutex<Set<ObjectIdentifier>>([])

    /// Records that SQL from outside this library runs on `connection`, such as a migration
    /// file that may `SET search_path`, `SET ROLE` or take a session lock: when the lease
    /// ends, the connection is checked and closed rather than pooled if any of it stayed.
    package func markForeignSQL(on connection: PostgresConnection) {
        _ = connectionsRunningForeignSQL.withLock { $0.insert(ObjectIdentifier(connection)) }
    }

    /// Whether the session has no setting, role, advisory lock, temporary table, `LISTEN` or `PREPARE`d statement
    /// beyond what it had when it connected. Settings given at connect time have source
    /// `client`; only `SET` and `set_config(…, false)` give `session`.
    static let cleanSessionCheck = """
        SELECT session_user = current_user
           AND current_user = (SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid())
           AND NOT EXISTS (SELECT FROM pg_settings WHERE source = 'session')
           AND NOT EXISTS (SELECT FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')
           AND NOT EXISTS (SELECT FROM pg_class WHERE relnamespace = pg_my_temp_schema())
           AND NOT EXISTS (SELECT FROM pg_listening_channels())
           AND NOT EXISTS (SELECT FROM pg_prepared_statements WHERE from_sql)
        """

    private func closeIfForeignSQLLeftState(on connection: PostgresConnection) async {
        guard connectionsRunningForeignSQL.withLock({ $0.remove(ObjectIdentifier(connection)) }) != nil, !connection.isClosed else { return }
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: Self.cleanSessionCheck), logger: logger).collect()
            if try rows.first?.decode(Bool.self) == true { return }
            logger.warning("a migration left session state (a setting, role, lock, temporary table or LISTEN) on its connection; the connection was closed instead of pooled")
        } catch {
            logger.debug("the session check failed; closing the connection", metadata: [LoggingKeys.error: "\(SchemaDBError.safeDescription(of: error))"])
        }
        try? await connection.close()
    }

    /// How many of `wanted` concurrent sessions the server can take now: its `max_connections`,
    /// less the connections reserved for superusers and those open, plus the ones this pool
    /// already holds open. At least 1; `wanted` when the server cannot say.
    public func concurrencyTheServerAllows(_ wanted: Int) async -> Int {
        let free = try? await database(schema: nil).fetchValue(
            """
            SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
                   - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int
            """, as: Int.self)
        guard let free else { return wanted }
        return max(1, min(wanted, free))
    }

    /// A handle bound to `schema`. Creating one costs nothing and opens no connection.
    public func database(schema: SQLIdentifier?) -> SchemaDatabase {
        SchemaDatabase(pool: self, schema: schema, logger: logger)
    }

    /// A handle bound to the schema named `name`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidIdentifier``.
    public func database(schema name: String) throws -> SchemaDatabase {
        database(schema: try SQLIdentifier(name))
    }

    /// Creates an owned pool, runs it, checks the connection, and gives it to `body`. The pool
    /// is closed when `body` returns or throws.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/connectionFailed`` naming the
    ///   cause when the server cannot be reached or refuses the login, or what `body` throws.
    public static func withPool<Result: Sendable>(
        configuration: DatabaseConfig,
        logger: Logger,
        _ body: (DatabasePool) async throws -> Result
    ) async throws -> Result {
        let pool = try DatabasePool(configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pool.run() }
            defer { group.cancelAll() }
            try await pool.checkConnection()
            return try await body(pool)
        }
    }
}
