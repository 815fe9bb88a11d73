import Foundation
import Logging
import SchemaDB
import ServiceLifecycle
import Synchronization

/// One pool per placement. The default placement's is the pool ``Tenancy`` was built with;
/// another placement's is opened on its first use, checked against the identity the registry
/// recorded for it, and run by ``Tenancy/run()``. The opened pools together stay within a
/// bound on connections.
final class PlacementPools: Sendable {
    /// The default placement's pool.
    let primary: DatabasePool
    private let registry: TenantRegistry
    private let databases: [String: DatabaseConfig]
    private let connectionsPerPlacement: Int
    private let connectionBound: Int
    private let environment: [String: String]
    private let logger: Logger
    private let state = Mutex<State>(State())
    private let started: AsyncStream<(DatabasePool, AsyncStream<Void>)>.Continuation
    private let toRun: AsyncStream<(DatabasePool, AsyncStream<Void>)>
    private let isRunning = Atomic<Bool>(false)

    private struct State {
        var pools: [String: Opened] = [:]
        var connections = 0
    }

    private struct Opened {
        let pool: DatabasePool
        let size: Int
        /// Finishing it stops the pool.
        let stop: AsyncStream<Void>.Continuation
        var verified = false
        /// The last failed check, repeated to callers for a second instead of checking again.
        var failure: (at: ContinuousClock.Instant, error: TenancyError)?
    }

    /// How long a failed check of a placement is repeated before the placement is tried again.
    static let failureMemory = Duration.seconds(1)

    init(primary: DatabasePool, registry: TenantRegistry, databases: [String: DatabaseConfig] = [:], connectionsPerPlacement: Int = 8, connectionBound: Int = 64,
         environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) {
        self.primary = primary
        self.registry = registry
        self.databases = databases
        self.connectionsPerPlacement = connectionsPerPlacement
        self.connectionBound = connectionBound
        self.environment = environment
        self.logger = logger
        (toRun, started) = AsyncStream<(DatabasePool, AsyncStream<Void>)>.makeStream()
    }

    /// Runs every pool opened, now or later, until it is discarded, or the task is cancelled,
    /// or the service group shuts down.
    func run() async {
        isRunning.store(true, ordering: .relaxed)
        defer { isRunning.store(false, ordering: .relaxed) }
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for await (pool, stopped) in self.toRun {
                    group.addTask {
                        await withDiscardingTaskGroup { running in
                            running.addTask { await pool.run() }
                            for await _ in stopped {}
                            running.cancelAll()
                        }
                    }
                }
            }
        }
    }

    /// The pool of placement `name`, checked against the database the registry recorded (and
    /// each of its connections before their first use).
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/placementNotFound``,
    ///   ``TenancyError/Code/placementUnreachable`` or ``TenancyError/Code/placementMismatch``.
    func pool(for name: String) async throws -> DatabasePool {
        if name == Placement.defaultName { return primary }
        let now = ContinuousClock.now
        let known = state.withLock { $0.pools[name] }
        if let known {
            if known.verified { return known.pool }
            if let failure = known.failure, now - failure.at < Self.failureMemory { throw failure.error }
        }
        // A pool that never reached its database is started afresh: postgres-nio's pool stops
        // trying for a while after failed connects.
        if let known, known.failure != nil { discard(name, known.pool) }
        guard let placement = try await registry.store.placements().first(where: { $0.name == name }) else {
            throw TenancyError.placementNotFound(name)
        }
        try await waitUntilRunning(for: name)
        let pool = try open(placement)
        do {
            try await Self.verify(pool, as: placement)
            state.withLock { $0.pools[name]?.verified = true }
            return pool
        } catch let error as TenancyError {
            state.withLock { $0.pools[name]?.failure = (ContinuousClock.now, error) }
            throw error
        }
    }

    /// Stops and forgets `pool`, the pool of placement `name`, unless it was replaced already.
    private func discard(_ name: String, _ pool: DatabasePool) {
        let stop: AsyncStream<Void>.Continuation? = state.withLock { state in
            guard let opened = state.pools[name], opened.pool === pool else { return nil }
            state.pools[name] = nil
            state.connections -= opened.size
            return opened.stop
        }
        stop?.finish()
    }

    /// Waits a moment for ``run()`` (a service group may still be starting), and fails with
    /// a clear error when nothing runs the placements' pools.
    private func waitUntilRunning(for name: String) async throws {
        let deadline = ContinuousClock.now + .seconds(1)
        while !isRunning.load(ordering: .relaxed) {
            guard ContinuousClock.now < deadline else {
                throw TenancyError(
                    code: .placementUnreachable,
                    message: "placement \"\(name)\" needs Tenancy to be running (run() it, or add it to the ServiceGroup) for its pool to connect")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The pools opened so far, by placement name, the default placement's included.
    var openedPools: [String: DatabasePool] {
        var pools = state.withLock { $0.pools.mapValues(\.pool) }
        pools[Placement.defaultName] = primary
        return pools
    }

    /// The configuration this process connects to placement `name` with; `nil` for the default
    /// placement over a borrowed client.
    func configuration(named name: String) async throws -> DatabaseConfig? {
        if name == Placement.defaultName { return primary.configuration }
        guard let placement = try await registry.store.placements().first(where: { $0.name == name }) else { throw TenancyError.placementNotFound(name) }
        return try configuration(for: placement)
    }

    /// The configuration a process connects to `placement` with: its own setting for it, or
    /// the recorded URL with the password from the environment (`PGPASSWORD` or the password file).
    func configuration(for placement: Placement) throws -> DatabaseConfig {
        if let configured = databases[placement.name] { return configured }
        guard let url = placement.url else {
            throw TenancyError(
                code: .placementUnreachable,
                message: "placement \"\(placement.name)\" has no URL in the registry; configure it (\(Placement.environmentVariable(forName: placement.name)) for tenantctl)")
        }
        return try DatabaseConfig(url: url).fillingPassword(from: environment)
    }

    private func open(_ placement: Placement) throws -> DatabasePool {
        var config: DatabaseConfig
        do {
            config = try configuration(for: placement)
        } catch let error as SchemaDBError {
            throw TenancyError(code: .placementUnreachable, message: "the URL of placement \"\(placement.name)\" cannot be used: \(error.message)", underlying: error)
        }
        // A placement configured by the host keeps its own pool size.
        if databases[placement.name] == nil { config.maximumConnections = connectionsPerPlacement }
        // A placement that is down fails its check at once; the next request tries again.
        config.retry = .none
        let size = config.maximumConnections
        let check = connectionCheck(for: placement)
        return try state.withLock { state in
            if let existing = state.pools[placement.name] { return existing.pool }
            let (stopped, stop) = AsyncStream<Void>.makeStream()
            guard state.connections + size <= connectionBound else {
                throw TenancyError(
                    code: .placementUnreachable,
                    message: "opening placement \"\(placement.name)\" needs \(size) more connections, and the placements' pools already hold \(state.connections) of at most \(connectionBound); raise the bound (Configuration.maximumPlacementConnections)")
            }
            // A placement may be down while the others serve: its queries fail within a second.
            let pool = try DatabasePool(
                configuration: config, label: "placement \"\(placement.name)\" at \(config.endpointDescription)", leasesEveryQuery: true,
                checkingEachConnection: check, logger: logger)
            state.pools[placement.name] = Opened(pool: pool, size: size, stop: stop)
            state.connections += size
            started.yield((pool, stopped))
            return pool
        }
    }

    /// Checks each connection of `placement`'s pool against the recorded identity before its
    /// first use, so that a server swapped in behind the same URL gets no query.
    private func connectionCheck(for placement: Placement) -> (@Sendable (SchemaDatabase) async throws -> Void)? {
        guard let recorded = placement.identity else { return nil }
        return { [weak self] connection in
            let identity = try await RegistryBinding.identity(of: connection)
            guard Self.matches(identity, recorded) else {
                let mismatch = TenancyError.placementMismatch(placement, now: identity)
                self?.noteMismatch(placement.name, mismatch)
                throw mismatch
            }
        }
    }

    /// A connection of placement `name` reached another database: the pool is checked again
    /// before it is handed out (``pool(for:)``), and refused meanwhile.
    private func noteMismatch(_ name: String, _ error: TenancyError) {
        state.withLock { state in
            state.pools[name]?.verified = false
            state.pools[name]?.failure = (ContinuousClock.now, error)
        }
    }

    /// Checks that `pool` reaches the database recorded for `placement`: its first query makes
    /// a connection, which the pool checks (``connectionCheck(for:)``).
    static func verify(_ pool: DatabasePool, as placement: Placement) async throws {
        do {
            // A standalone connection fails at once with the cause; the pool would wait a minute.
            try await pool.checkConnection()
            _ = try await pool.database(schema: nil).fetchAll("SELECT 1")
        } catch let error as SchemaDBError where error.underlying is TenancyError {
            throw error.underlying as? TenancyError ?? error
        } catch {
            throw TenancyError(
                code: .placementUnreachable,
                message: "placement \"\(placement.name)\" cannot be reached: \(error); its tenants are refused until it is back",
                underlying: error)
        }
    }

    /// Whether `identity` is the database recorded as `recorded`; a role that may not read the
    /// server's system identifier is judged by the database name.
    static func matches(_ identity: DatabaseIdentity, _ recorded: DatabaseIdentity) -> Bool {
        identity == recorded || (identity.systemIdentifier == "unknown" && identity.databaseName == recorded.databaseName)
    }
}
