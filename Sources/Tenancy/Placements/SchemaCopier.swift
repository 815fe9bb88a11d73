import Foundation
import PostgresNIO
import SchemaDB

/// Copies a tenant schema's rows from one database to another, and freezes the source: the
/// database side of a move. Rows travel as text (each column's own output and input
/// functions), so every type round-trips exactly, and never reach a log or an error.
enum SchemaCopier {
    /// A table to copy: its name and the columns a copy fills (generated columns are left out).
    struct Table: Sendable, Hashable {
        var name: String
        var columns: [String]
    }

    /// What a table holds, to compare a copy with its source.
    struct Fingerprint: Sendable, Hashable {
        var rows: Int64
        var checksum: String
    }

    /// The name of the trigger function that refuses writes to a schema whose tenant moved away.
    static let freezeFunction = "tenancy_moved_away"

    /// The tables of `schema`, parents before the tables whose foreign keys point at them,
    /// without the migration tracking table (a copy's own migrations fill it).
    static func tables(of schema: SQLIdentifier, on db: SchemaDatabase) async throws -> [Table] {
        let rows = try await db.fetchAll(
            """
            SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attnum)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2
            GROUP BY c.relname
            """, schema.name, SchemaMigrator.defaultTrackingTable.name)
        var tables: [String: Table] = [:]
        for row in rows {
            let (name, columns) = try row.decode((String, [String]).self)
            tables[name] = Table(name: name, columns: columns)
        }
        var parents: [String: Set<String>] = [:]
        for row in try await db.fetchAll(
            """
            SELECT child.relname::text, parent.relname::text FROM pg_constraint k
            JOIN pg_class child ON child.oid = k.conrelid JOIN pg_class parent ON parent.oid = k.confrelid
            JOIN pg_namespace n ON n.oid = child.relnamespace
            WHERE k.contype = 'f' AND n.nspname = $1 AND parent.relnamespace = child.relnamespace AND child.oid <> parent.oid
            """, schema.name) {
            let (child, parent) = try row.decode((String, String).self)
            parents[child, default: []].insert(parent)
        }
        // Parents first; a cycle of foreign keys keeps its tables in name order.
        var ordered: [Table] = []
        var placed = Set<String>()
        var remaining = tables.keys.sorted()
        while !remaining.isEmpty {
            let ready = remaining.filter { (parents[$0] ?? []).subtracting([$0]).isSubset(of: placed.union(Set(tables.keys).subtracting(remaining))) }
            let next = ready.isEmpty ? [remaining[0]] : ready
            for name in next {
                ordered.append(tables[name]!)
                placed.insert(name)
            }
            remaining.removeAll { next.contains($0) }
        }
        return ordered
    }

    /// Copies every row of `table` from `source` (a transaction that sees one snapshot) into
    /// `target` (a transaction in the target database), `batch` rows at a time.
    /// - Returns: The rows copied.
    static func copy(_ table: Table, schema: SQLIdentifier, from source: SchemaDatabase, to target: SchemaDatabase, batch: Int = 5_000) async throws -> Int {
        let cursor = "tenancy_move_\(UInt32.random(in: 0 ... .max))"
        let select = table.columns.map { SQLIdentifier.quote($0) + "::text" }.joined(separator: ", ")
        try await source.execute(try SQLTemplate("DECLARE \(cursor) NO SCROLL CURSOR FOR SELECT \(select) FROM \(schema.quoted).\(SQLIdentifier.quote(table.name))"))
        let into = target.withSchema(schema)
        let fetch = try SQLTemplate("FETCH \(batch) FROM \(cursor)")
        let fetchBatch = { @Sendable () async throws -> [[String?]] in
            try await source.fetchAll(fetch).map { row in try row.map { cell in try cell.decode(String?.self) } }
        }
        var copied = 0
        var rows = try await fetchBatch()
        // The next batch is read from the source while this one is written to the target.
        while !rows.isEmpty {
            async let next = fetchBatch()
            let values = rows.map { row in row.map { $0 as (any CopyValue)? } }
            copied += try await into.copyRows(into: table.name, columns: table.columns, rows: values)
            rows = try await next
        }
        try await source.execute(try SQLTemplate("CLOSE \(cursor)"))
        return copied
    }

    /// Sets every sequence of `schema` in `target` where it is in `source`.
    static func copySequences(of schema: SQLIdentifier, from source: SchemaDatabase, to target: SchemaDatabase) async throws {
        let rows = try await source.fetchAll(
            "SELECT sequencename::text, last_value FROM pg_sequences WHERE schemaname = $1 AND last_value IS NOT NULL", schema.name)
        for row in rows {
            let (name, value) = try row.decode((String, Int64).self)
            _ = try await target.fetchAll("SELECT setval($1::regclass, $2, true)", "\(schema.quoted).\(SQLIdentifier.quote(name))", value)
        }
    }

    /// The row count and (with `content`) an order-independent checksum of every row of
    /// `table`: the sum of a 64-bit hash of each row's text (PostgreSQL's hash functions give
    /// the same value on every platform, as hash partitioning needs), with no sort.
    /// Each row's text is read with ``pinTextFormat(in:)``'s settings, so two servers with other
    /// defaults give the same checksum for the same rows; a count alone needs no settings.
    static func fingerprint(_ table: Table, schema: SQLIdentifier, on db: SchemaDatabase, content: Bool = true) async throws -> Fingerprint {
        let checksum = content ? "coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text" : "''"
        let query = try SQLTemplate("SELECT count(*), \(checksum) FROM \(schema.quoted).\(SQLIdentifier.quote(table.name)) t")
        // In a transaction of its own, or a savepoint of the caller's: the settings are local.
        let row = content
            ? try await db.withTransaction(readOnly: true) { tx in
                try await pinTextFormat(in: tx)
                return try await tx.fetchAll(query).first
            }
            : try await db.fetchAll(query).first
        let (count, sum) = try row?.decode((Int64, String).self) ?? (Int64(0), "")
        return Fingerprint(rows: count, checksum: sum)
    }

    /// Sets, for the rest of `transaction`, the settings a value's text depends on to fixed
    /// values (dates in ISO order, times in UTC, exact floats and intervals, bytea in hex, money
    /// in the C locale), so that rows read as text on one server are read back the same on
    /// another whatever either's defaults: a date printed day-first must not be parsed
    /// month-first.
    static func pinTextFormat(in transaction: SchemaDatabase) async throws {
        _ = try await transaction.fetchAll(
            """
            SELECT set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'postgres', true), set_config('TimeZone', 'UTC', true),
                   set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true), set_config('lc_monetary', 'C', true)
            """)
    }

    /// The SQLSTATE a frozen schema refuses writes with: `read_only_sql_transaction`.
    static let frozenSQLState = "25006"

    /// Makes every table of `schema` refuse writes (`25006`), inside `transaction`, noting where
    /// the tenant went.
    static func freeze(_ schema: SQLIdentifier, movedTo placement: String, in transaction: SchemaDatabase) async throws {
        let function = "\(schema.quoted).\(SQLIdentifier.quote(freezeFunction))"
        try await transaction.execute(try SQLTemplate(
            """
            CREATE FUNCTION \(function)() RETURNS trigger LANGUAGE plpgsql AS $body$
            BEGIN
                RAISE EXCEPTION 'this tenant schema was moved to another placement and is read-only' USING ERRCODE = '\(frozenSQLState)';
            END
            $body$
            """))
        // The note holds a placement name and a time: characters a literal carries as they are.
        try Placement.validate(name: placement)
        let note = "moved to placement \(placement) at \(ISO8601DateFormatter().string(from: Date()))"
        try await transaction.execute(try SQLTemplate("COMMENT ON FUNCTION \(function)() IS '\(note)'"))
        let tables = try await transaction.fetchAll(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            schema.name, as: String.self)
        for table in tables {
            try await transaction.execute(try SQLTemplate(
                "CREATE TRIGGER \(SQLIdentifier.quote(freezeFunction)) BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON \(schema.quoted).\(SQLIdentifier.quote(table)) FOR EACH STATEMENT EXECUTE FUNCTION \(function)()"))
        }
    }

    /// Whether `schema` was frozen by ``freeze(_:movedTo:in:)``.
    static func isFrozen(_ schema: SQLIdentifier, on db: SchemaDatabase) async throws -> Bool {
        try await db.fetchValue("SELECT to_regprocedure($1) IS NOT NULL", "\(schema.quoted).\(SQLIdentifier.quote(freezeFunction))()", as: Bool.self) == true
    }

    /// The frozen schemas whose names start with `prefix`, with the note each was frozen with
    /// (where the tenant went, and when).
    static func frozenSchemas(prefix: String, on db: SchemaDatabase) async throws -> [String: String] {
        var frozen: [String: String] = [:]
        for row in try await db.fetchAll(
            """
            SELECT n.nspname::text, coalesce(obj_description(p.oid, 'pg_proc'), 'moved away') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 AND starts_with(n.nspname, $2)
            """, freezeFunction, prefix) {
            let (schema, note) = try row.decode((String, String).self)
            frozen[schema] = note
        }
        return frozen
    }

    /// When `note` (as ``freeze(_:movedTo:in:)`` writes it) says the schema was frozen.
    static func frozenAt(_ note: String) -> Date? {
        guard let range = note.range(of: " at ", options: .backwards) else { return nil }
        return ISO8601DateFormatter().date(from: String(note[range.upperBound...]))
    }

    /// Lets `schema` take writes again: its freeze function and every trigger on it go.
    static func unfreeze(_ schema: SQLIdentifier, in transaction: SchemaDatabase) async throws {
        try await transaction.execute(try SQLTemplate("DROP FUNCTION IF EXISTS \(schema.quoted).\(SQLIdentifier.quote(freezeFunction))() CASCADE"))
    }
}
