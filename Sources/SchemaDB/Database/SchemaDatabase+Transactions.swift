import PostgresNIO
import NIOCore

extension SchemaDatabase {
    /// A transaction isolation level.
    public enum IsolationLevel: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    /// Runs `body` in a transaction that commits when `body` returns and rolls back when it throws.
    /// When a statement failed inside `body` and `body` caught the error, the server rolls the
    /// transaction back at `COMMIT`, and this throws ``SchemaDBError/Code/transactionFailed``.
    ///
    /// `body` gets a handle bound to the transaction's connection, with the same query API.
    /// Called on a handle that is already in a transaction, it runs `body` in a savepoint: an
    /// error thrown by `body` rolls back to the savepoint and is rethrown.
    ///
    /// ```swift
    /// try await db.withTransaction { tx in
    ///     let id = try await tx.insertReturningID("INSERT INTO {{tables.users}} (email) VALUES ($1)", email, as: Int.self)
    ///     try await tx.execute("INSERT INTO {{tables.profiles}} (user_id) VALUES ($1)", id)
    /// }
    /// ```
    /// - Parameters:
    ///   - isolation: The isolation level; `nil` uses the server's default. Ignored for savepoints.
    ///   - readOnly: Start a read-only transaction. Ignored for savepoints.
    ///   - body: The work; it must not keep the handle after returning.
    @discardableResult
    public func withTransaction<Result>(
        isolation: IsolationLevel? = nil,
        readOnly: Bool = false,
        _ body: (SchemaDatabase) async throws -> sending Result
    ) async throws -> sending Result {
        switch scope {
        case .connection(let connection, let depth?):
            return try await withSavepoint(on: connection, depth: depth + 1, body)
        case .connection(let connection, nil):
            return try await runTransaction(on: connection, isolation: isolation, readOnly: readOnly, body)
        case .pool:
            return try await pool.withOpenConnection { connection in
                try await runTransaction(on: connection, isolation: isolation, readOnly: readOnly, body)
            }
        }
    }

    /// Runs `body` with a handle bound to one leased connection, for work that needs the same
    /// session throughout (temporary tables, session advisory locks, `LISTEN`).
    ///
    /// - Warning: Session settings made with `SET` stay on the connection after it returns to
    ///   the pool. Reset them before returning, or use `SET LOCAL` in a transaction.
    @discardableResult
    public func withConnection<Result>(_ body: (SchemaDatabase) async throws -> sending Result) async throws -> sending Result {
        if case .connection = scope { return try await body(self) }
        return try await pool.withOpenConnection { connection in
            try await body(bound(to: connection, transactionDepth: nil))
        }
    }

    func bound(to connection: PostgresConnection, transactionDepth: Int?) -> SchemaDatabase {
        var bound = SchemaDatabase(pool: pool, schema: schema, logger: logger, scope: .connection(connection, transactionDepth: transactionDepth))
        bound.spanAttributes = spanAttributes
        bound.failureObserver = failureObserver
        return bound
    }

    private func runTransaction<Result>(
        on connection: PostgresConnection,
        isolation: IsolationLevel?,
        readOnly: Bool,
        _ body: (SchemaDatabase) async throws -> sending Result
    ) async throws -> sending Result {
        var begin = "BEGIN"
        if let isolation { begin += " ISOLATION LEVEL " + isolation.rawValue }
        if readOnly { begin += " READ ONLY" }
        let session = bound(to: connection, transactionDepth: 0)
        try await session.control(begin, on: connection)
        let result: Result
        do {
            result = try await body(session)
        } catch {
            await session.rollback(on: connection, to: nil)
            throw error
        }
        do {
            try await session.commit(on: connection)
        } catch {
            // A failed COMMIT ends the transaction; make sure the session is clean.
            await session.rollback(on: connection, to: nil)
            throw error
        }
        return result
    }

    private func withSavepoint<Result>(
        on connection: PostgresConnection,
        depth: Int,
        _ body: (SchemaDatabase) async throws -> sending Result
    ) async throws -> sending Result {
        let name = "schemadb_savepoint_\(depth)"
        let session = bound(to: connection, transactionDepth: depth)
        try await session.control("SAVEPOINT " + name, on: connection)
        let result: Result
        do {
            result = try await body(session)
        } catch {
            await session.rollback(on: connection, to: name)
            throw error
        }
        try await session.control("RELEASE SAVEPOINT " + name, on: connection)
        return result
    }

    private func control(_ sql: String, on connection: PostgresConnection) async throws {
        do {
            try await instrumented(sql) {
                try Self.checkOpen(connection)
                let logger = logger
                _ = try await connection.answering { try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect() }
            }
        } catch var error as SchemaDBError where error.code == .queryFailed {
            error.code = .transactionFailed
            error.message = "\(sql) failed"
            throw error
        }
    }

    /// Commits, and fails when the server answered `ROLLBACK`: a statement of the transaction
    /// failed and `body` caught the error, so nothing was kept.
    private func commit(on connection: PostgresConnection) async throws {
        let command = try await instrumented("COMMIT") {
            try Self.checkOpen(connection)
            let logger = logger
            return try await connection.answering {
                let result: EventLoopFuture<PostgresQueryResult> = connection.query(PostgresQuery(unsafeSQL: "COMMIT"), logger: logger)
                return try await result.get().metadata.command
            }
        }
        guard command != "COMMIT" else { return }
        throw SchemaDBError(
            code: .transactionFailed,
            message: "the transaction was rolled back, not committed (the server answered \(command)): a statement in it failed and its error was caught; nothing of it was kept")
    }

    /// Rolls back the transaction, or to `savepoint`. When that fails the connection's state is
    /// unknown, so it is closed rather than returned to the pool half-way through a transaction.
    private func rollback(on connection: PostgresConnection, to savepoint: String?) async {
        // A closed connection has no transaction left to roll back.
        guard !connection.isClosed else { return }
        let sql = savepoint.map { "ROLLBACK TO SAVEPOINT \($0)" } ?? "ROLLBACK"
        do {
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
            if let savepoint {
                _ = try await connection.query(PostgresQuery(unsafeSQL: "RELEASE SAVEPOINT \(savepoint)"), logger: logger).collect()
            }
        } catch {
            logger.debug("rollback failed; closing the connection", metadata: [LoggingKeys.error: "\(SchemaDBError.safeDescription(of: error))"])
            let _: EventLoopFuture<Void> = connection.close()
        }
    }
}
