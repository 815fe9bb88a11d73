public import PostgresNIO

extension SchemaDatabase {
    /// Runs a statement and returns the number of rows it inserted, updated or deleted.
    ///
    /// ```swift
    /// let removed = try await db.execute("DELETE FROM {{tables.sessions}} WHERE expires_at < $1", Date())
    /// ```
    /// - Parameters:
    ///   - sql: The statement; `$1`, `$2`, … refer to `arguments`.
    ///   - arguments: Values bound to the parameters, never spliced into the SQL.
    /// - Returns: The affected row count, or `0` for statements that report none (DDL).
    @discardableResult
    public func execute(_ sql: SQLTemplate, _ arguments: QueryArgument...) async throws -> Int {
        try await affectedRows(try makeQuery(sql, arguments))
    }

    /// Runs one statement once per argument list, on one connection and in one transaction.
    /// - Returns: The total affected row count.
    @discardableResult
    public func executeMany(_ sql: SQLTemplate, _ argumentLists: [[QueryArgument]]) async throws -> Int {
        let queries = try argumentLists.map { try makeQuery(sql, $0) }
        guard !queries.isEmpty else { return 0 }
        return try await withTransaction { transaction in
            var total = 0
            for query in queries { total += try await transaction.affectedRows(query) }
            return total
        }
    }

    /// Runs a query and returns all its rows.
    public func fetchAll(_ sql: SQLTemplate, _ arguments: QueryArgument...) async throws -> [PostgresRow] {
        try await rows(try makeQuery(sql, arguments))
    }

    /// Runs a query and decodes every row as `type`, matching properties to columns by name
    /// (`createdAt` matches `createdAt` or `created_at`).
    public func fetchAll<Row: Decodable>(_ sql: SQLTemplate, _ arguments: QueryArgument..., as type: Row.Type) async throws -> [Row] {
        let query = try makeQuery(sql, arguments)
        let rows = try await rows(query)
        return try decodeRows(rows, as: type, sql: query.sql)
    }

    /// Runs a query and returns its first row, or `nil` when there is none.
    public func fetchOne(_ sql: SQLTemplate, _ arguments: QueryArgument...) async throws -> PostgresRow? {
        try await rows(try makeQuery(sql, arguments)).first
    }

    /// Runs a query and decodes its first row as `type`, or returns `nil` when there is none.
    public func fetchOne<Row: Decodable>(_ sql: SQLTemplate, _ arguments: QueryArgument..., as type: Row.Type) async throws -> Row? {
        let query = try makeQuery(sql, arguments)
        guard let row = try await rows(query).first else { return nil }
        return try decodeRows([row], as: type, sql: query.sql)[0]
    }

    /// Runs a query and returns the first column of its first row, or `nil` when there is no
    /// row or the value is `NULL`.
    ///
    /// ```swift
    /// let count = try await db.fetchValue("SELECT count(*) FROM {{tables.users}}", as: Int.self)
    /// ```
    public func fetchValue<Value: PostgresDecodable>(_ sql: SQLTemplate, _ arguments: QueryArgument..., as type: Value.Type) async throws -> Value? {
        let query = try makeQuery(sql, arguments)
        guard let cell = try await rows(query).first?.first else { return nil }
        guard cell.bytes != nil else { return nil }
        do {
            return try cell.decode(Value.self)
        } catch {
            throw SchemaDBError.wrapping(error, sql: query.sql, schema: schema)
        }
    }

    /// Runs an `INSERT` and returns the new row's key. Unless the statement has its own
    /// `RETURNING` clause, `RETURNING "id"` (or the `column` given) is appended.
    ///
    /// ```swift
    /// let id = try await db.insertReturningID("INSERT INTO {{tables.users}} (email) VALUES ($1)", email, as: Int.self)
    /// ```
    /// - Throws: ``SchemaDBError`` when the statement returns no row.
    public func insertReturningID<ID: PostgresDecodable>(
        _ sql: SQLTemplate, _ arguments: QueryArgument..., column: SQLIdentifier? = nil, as type: ID.Type
    ) async throws -> ID {
        let suffix = sql.hasReturningClause ? "" : " RETURNING " + (column?.quoted ?? "\"id\"")
        let query = try makeQuery(sql, arguments, suffix: suffix)
        guard let cell = try await rows(query).first?.first, cell.bytes != nil else {
            throw SchemaDBError(code: .queryFailed, message: "the INSERT returned no id; check that it inserts a row and returns its key", schema: schema?.name, sql: query.sql)
        }
        do {
            return try cell.decode(ID.self)
        } catch {
            throw SchemaDBError.wrapping(error, sql: query.sql, schema: schema)
        }
    }

    /// Whether a table, view or materialized view named `table` exists in this handle's schema
    /// (or, with no schema, in the session's current schema).
    public func tableExists(_ table: String) async throws -> Bool {
        try await fetchValue(
            """
            SELECT EXISTS (
                SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = COALESCE($1, current_schema()) AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
            """, schema?.name, table, as: Bool.self) ?? false
    }

    /// Whether this handle's schema exists. A handle with no schema answers `true`.
    public func schemaExists() async throws -> Bool {
        guard let schema else { return true }
        return try await fetchValue("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", schema.name, as: Bool.self) ?? false
    }

    /// Creates this handle's schema unless it exists.
    public func createSchemaIfNeeded() async throws {
        guard schema != nil else { return }
        try await execute("CREATE SCHEMA IF NOT EXISTS {{schema}}")
    }

    /// Drops this handle's schema and, with `cascade`, everything in it.
    ///
    /// > Warning: This deletes data. It does nothing for a handle with no schema.
    public func dropSchema(cascade: Bool) async throws {
        guard schema != nil else { return }
        try await execute(cascade ? "DROP SCHEMA IF EXISTS {{schema}} CASCADE" : "DROP SCHEMA IF EXISTS {{schema}}")
    }

    private func decodeRows<Row: Decodable>(_ rows: [PostgresRow], as type: Row.Type, sql: String) throws -> [Row] {
        do {
            return try RowDecoder().decodeAll(type, from: rows)
        } catch let error as DecodingError {
            throw SchemaDBError(code: .decodingFailed, message: "rows cannot be decoded as \(type): \(Self.describe(error))", schema: schema?.name, sql: sql, underlying: error)
        } catch {
            throw SchemaDBError.wrapping(error, sql: sql, schema: schema)
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(_, let context), .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        @unknown default:
            return "\(error)"
        }
    }
}
