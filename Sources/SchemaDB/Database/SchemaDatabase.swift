public import Logging
public import PostgresNIO
import NIOCore

/// A value bound to a query parameter: anything postgres-nio can encode, or `nil` for `NULL`.
public typealias QueryArgument = (any PostgresThrowingDynamicTypeEncodable)?

/// A database handle bound to one schema over the shared pool.
///
/// Creating a handle costs nothing and opens no connection: it is a schema name, a reference to
/// the pool and a logger. Queries are templates (``SQLTemplate``) whose `{{tables.name}}`
/// placeholders render as `"schema"."name"`, so a handle never depends on `search_path`, and an
/// unqualified table name is never silently resolved in another tenant's schema.
///
/// Inside ``withTransaction(isolation:readOnly:_:)`` and ``withConnection(_:)`` the closure gets
/// a handle of the same type bound to one connection, with the same query API; a nested
/// ``withTransaction(isolation:readOnly:_:)`` becomes a savepoint.
public struct SchemaDatabase: Sendable {
    /// The schema that `{{tables.name}}` and `{{schema}}` render to; `nil` renders bare names.
    public let schema: SQLIdentifier?
    /// The logger of this handle's queries. Set it to add request metadata.
    public var logger: Logger
    /// The pool this handle runs on.
    public let pool: DatabasePool
    /// Attributes added to the span of each statement of this handle, such as the tenant's slug.
    /// Never put a data value here.
    public var spanAttributes: [String: String] = [:]
    /// Called with the error of every statement of this handle that fails, and of the
    /// transactions and connections it starts, before the error is thrown: for the handle's
    /// owner to react to what the server said, as a tenant directory forgets a tenant whose
    /// schema refused a write as read-only.
    public var failureObserver: (@Sendable (SchemaDBError) -> Void)?

    enum Scope: Sendable {
        /// Each query leases a connection from the pool.
        case pool
        /// Bound to one connection; `transactionDepth` is `nil` outside a transaction, `0` in a
        /// transaction and `n` inside `n` nested savepoints.
        case connection(PostgresConnection, transactionDepth: Int?)
    }
    let scope: Scope

    init(pool: DatabasePool, schema: SQLIdentifier?, logger: Logger, scope: Scope = .pool) {
        self.pool = pool
        self.schema = schema
        self.logger = logger
        self.scope = scope
    }

    /// The same pool and scope, bound to another schema.
    public func withSchema(_ schema: SQLIdentifier?) -> SchemaDatabase {
        var other = SchemaDatabase(pool: pool, schema: schema, logger: logger, scope: scope)
        other.spanAttributes = spanAttributes
        other.failureObserver = failureObserver
        return other
    }

    /// Whether this handle is inside a transaction.
    public var isInTransaction: Bool {
        if case .connection(_, let depth) = scope { return depth != nil }
        return false
    }

    /// Renders `template` for this handle's schema.
    public func render(_ template: SQLTemplate) throws -> String {
        try template.render(schema: schema)
    }

    // MARK: - Running statements

    func makeQuery(_ template: SQLTemplate, _ arguments: [QueryArgument], suffix: String = "") throws -> PostgresQuery {
        let sql = try template.render(schema: schema) + suffix
        var bindings = PostgresBindings(capacity: arguments.count)
        do {
            for argument in arguments {
                if let argument { try bindings.append(argument) } else { bindings.appendNull() }
            }
        } catch {
            throw SchemaDBError(code: .queryFailed, message: "a query argument cannot be encoded: \(type(of: error))", schema: schema?.name, sql: sql)
        }
        return PostgresQuery(unsafeSQL: sql, binds: bindings)
    }

    /// Runs `query` and collects its rows.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await instrumented(query.sql) {
            switch scope {
            case .pool:
                // The pool's own query path is the fast one; after a connection failed it may hand
                // out a closed connection, on which a query is never answered, so it is avoided then.
                guard pool.isRecoveringFromConnectionLoss || pool.leasesEveryQuery else { return try await pool.client.query(query, logger: logger).collect() }
                return try await pool.withOpenConnection { connection in try await connection.query(query, logger: logger).collect() }
            case .connection(let connection, _):
                try Self.checkOpen(connection)
                let logger = logger
                return try await connection.answering { try await connection.query(query, logger: logger).collect() }
            }
        }
    }

    /// Runs `query` and returns the number of rows it affected.
    func affectedRows(_ query: PostgresQuery) async throws -> Int {
        try await instrumented(query.sql) {
            try await onConnection { connection in
                let logger = logger
                return try await connection.answering {
                    let result: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: logger)
                    return try await result.get().metadata.rows ?? 0
                }
            }
        }
    }

    func instrumented<Result>(_ sql: String, _ operation: () async throws -> Result) async throws -> Result {
        do {
            return try await pool.instrumentation.measure(sql: sql, schema: schema, logger: logger, spanAttributes: spanAttributes, operation)
        } catch {
            let wrapped = SchemaDBError.wrapping(error, sql: sql, schema: schema)
            guard var failure = wrapped as? SchemaDBError else { throw wrapped }
            if failure.code == .connectionFailed {
                pool.noteConnectionLoss()
                if let label = pool.label, !failure.message.contains(label) { failure.message += " (\(label))" }
            }
            failureObserver?(failure)
            throw failure
        }
    }

    /// Runs `body` on this handle's connection, or on one leased for the call.
    func onConnection<Result>(_ body: (PostgresConnection) async throws -> sending Result) async throws -> sending Result {
        switch scope {
        case .connection(let connection, _):
            try Self.checkOpen(connection)
            return try await body(connection)
        case .pool:
            return try await pool.withOpenConnection { connection in try await body(connection) }
        }
    }
}

extension SchemaDatabase {
    /// Marks this handle's connection as running SQL from outside this library (a migration
    /// file): when its lease ends, it is pooled again only if it carries no session state.
    package func markForeignSQL() {
        if case .connection(let connection, _) = scope { pool.markForeignSQL(on: connection) }
    }

    /// Refuses to use a connection that closed, such as one whose server went away in the
    /// middle of a transaction: postgres-nio never answers a query written to a closed
    /// connection, so the caller would wait forever.
    static func checkOpen(_ connection: PostgresConnection) throws {
        guard connection.isClosed else { return }
        throw SchemaDBError(code: .connectionFailed, message: "the connection to the server was lost; a transaction on it was rolled back by the server unless its COMMIT had been sent")
    }
}

extension SchemaDatabase: CustomStringConvertible {
    public var description: String { "SchemaDatabase(schema: \(schema?.quoted ?? "none"))" }
}
