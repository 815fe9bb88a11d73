import NIOCore
import PostgresNIO

extension SchemaDatabase {
    /// Copies rows into a table of this handle's schema with `COPY ... FROM STDIN`, the fastest
    /// way to load many rows.
    ///
    /// ```swift
    /// let loaded = try await db.copyRows(into: "events", columns: ["kind", "at"], rows: [["signup", Date()]])
    /// ```
    /// The copy runs in a transaction (this handle's, or one of its own). Values are sent in
    /// COPY's text format, escaped; `nil` is `NULL`.
    /// - Parameters:
    ///   - table: The table, in this handle's schema.
    ///   - columns: The columns each row fills, in order.
    ///   - rows: The rows; each has one value per column.
    /// - Returns: The number of rows copied.
    @discardableResult
    public func copyRows(into table: String, columns: [String], rows: some Sequence<[(any CopyValue)?]>) async throws -> Int {
        let tableName = try SQLIdentifier(table)
        let columnNames = try columns.map { try SQLIdentifier($0).name }
        guard isInTransaction else {
            return try await withTransaction { transaction in
                try await transaction.copyRows(into: table, columns: columns, rows: rows)
            }
        }
        guard case .connection(let connection, _) = scope else { preconditionFailure("a transaction is bound to a connection") }
        try Self.checkOpen(connection)
        let description = "COPY \(schema.map { $0.quoted + "." } ?? "")\(tableName.quoted) FROM STDIN"

        // postgres-nio quotes the table as one identifier, so the schema comes from search_path,
        // set for this transaction only and restored afterwards.
        var previousSearchPath: String? = nil
        if let schema {
            previousSearchPath = try await fetchValue("SELECT current_setting('search_path')", as: String.self)
            _ = try await fetchAll("SELECT set_config('search_path', $1, true)", schema.quoted)
        }
        var count = 0
        try await instrumented(description) {
            try await connection.copyFrom(table: tableName.name, columns: columnNames, logger: logger) { writer in
                var chunk = String()
                chunk.reserveCapacity(64 * 1024)
                for row in rows {
                    guard row.count == columnNames.count else {
                        throw SchemaDBError(code: .queryFailed, message: "row \(count + 1) has \(row.count) values for \(columnNames.count) columns", schema: schema?.name, sql: description)
                    }
                    CopyTextFormat.append(row, to: &chunk)
                    count += 1
                    if chunk.utf8.count >= 60 * 1024 {
                        try await writer.write(ByteBuffer(string: chunk))
                        chunk.removeAll(keepingCapacity: true)
                    }
                }
                if !chunk.isEmpty { try await writer.write(ByteBuffer(string: chunk)) }
            }
        }
        if let previousSearchPath {
            _ = try await fetchAll("SELECT set_config('search_path', $1, true)", previousSearchPath)
        }
        return count
    }
}
