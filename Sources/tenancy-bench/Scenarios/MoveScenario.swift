import Foundation
import SchemaDB
import Tenancy

/// Offline moves of a small and a large tenant (by default about 10 MB and 100 MB) to another
/// database of the same server and back: the move's total time and the time the tenant was refused, against the
/// same rows streamed by `psql -c "COPY … TO STDOUT" | psql -c "COPY … FROM STDIN"`.
enum MoveScenario {
    static let targetDatabase = "bench_move_target"

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let migrations = try context.migrationSet(named: "move-migrations", adding: [
            ("900_payload.sql", "CREATE TABLE {{tables.payload}} (id bigserial PRIMARY KEY, n int NOT NULL, body text NOT NULL);"),
        ])
        try await context.withPool(connections: 1) { pool in
            try await pool.database(schema: nil).execute(try SQLTemplate("DROP DATABASE IF EXISTS \(targetDatabase) WITH (FORCE)"))
            try await pool.database(schema: nil).execute(try SQLTemplate("CREATE DATABASE \(targetDatabase)"))
        }
        var target = context.databaseConfig(connections: 4)
        target.database = targetDatabase
        var result = ScenarioResult("move")
        try await context.withTenancy(schemaPrefix: "bench_mv_", registryPath: try context.freshRegistryPath("move"), migrations: migrations, connections: 6) { tenancy in
            try await tenancy.addPlacement("target", database: target)
            for (label, rows) in [("small", max(1, context.moveRows / 10)), ("large", context.moveRows)] {
                let slug = "move-\(label)"
                let tenant = try await tenancy.create(slug, placement: Placement.defaultName).tenant
                let db = try await tenancy.database(for: slug)
                try await db.execute("INSERT INTO {{tables.payload}} (n, body) SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, $1) i", rows)
                let bytes = try await db.fetchValue("SELECT pg_total_relation_size($1::regclass)", "\(SQLIdentifier.quote(tenant.schema)).payload", as: Int64.self) ?? 0
                context.note("move: tenant of \(bytes / 1_048_576) MB to another database")
                let start = ContinuousClock.now
                let away = try await tenancy.move(slug, to: "target")
                let total = ContinuousClock.now - start
                context.note("move: the same rows through psql COPY pipes (baseline)")
                let baseline = try await copyThroughPSQL(context, schema: tenant.schema, target: target)
                context.note("move: back again")
                let backStart = ContinuousClock.now
                let back = try await tenancy.move(slug, to: Placement.defaultName)
                let backTotal = ContinuousClock.now - backStart
                let seconds = (total.seconds + backTotal.seconds) / 2
                result.record("\(label)_megabytes", "tenant size", Double(bytes) / 1_048_576, unit: "MB")
                result.record("\(label)_move_seconds", "offline move, mean of there and back", seconds, unit: "s")
                result.record("\(label)_refused_ms_max", "tenant refused (offline: the whole move), longer of the two", Double(max(away.refusedMilliseconds, back.refusedMilliseconds)), unit: "ms")
                result.record("\(label)_psql_copy_seconds", "psql COPY pipe of the same rows (baseline)", baseline.seconds, unit: "s")
                result.record("\(label)_move_vs_copy", "move ÷ bare COPY (a move also locks, creates, checks every row and switches)", seconds / baseline.seconds, unit: "×")
                _ = try await tenancy.delete(slug, confirmingDataLoss: true)
            }
            _ = try await tenancy.dropMovedAwaySchemas()
        }
        try await context.dropSchemas(prefix: "bench_mv_")
        _ = try await context.withPool(connections: 1) { pool in
            try await pool.database(schema: nil).execute(try SQLTemplate("DROP DATABASE IF EXISTS \(targetDatabase) WITH (FORCE)"))
        }
        return result
    }

    /// Streams the payload table of `schema` from the frozen source into the (emptied) copy on
    /// `target` with two psql processes, as an operator would by hand.
    private static func copyThroughPSQL(_ context: BenchContext, schema: String, target: DatabaseConfig) async throws -> Duration {
        let table = "\(SQLIdentifier.quote(schema)).payload"
        let targetURL = target.url(maskingPassword: false)
        _ = try await DatabasePool.withPool(configuration: target, logger: context.logger) { pool in
            try await pool.database(schema: nil).execute(try SQLTemplate("TRUNCATE \(table)"))
        }
        let quoted = { (text: String) in "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let command = "\(quoted(context.psqlPath)) -X -q -d \(quoted(context.databaseURL)) -c \(quoted("COPY \(table) TO STDOUT")) | "
            + "\(quoted(context.psqlPath)) -X -q -v ON_ERROR_STOP=1 -d \(quoted(targetURL)) -c \(quoted("COPY \(table) FROM STDIN"))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-o", "pipefail", "-c", command]
        process.standardOutput = FileHandle.nullDevice
        let start = ContinuousClock.now
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: BenchError("cannot run the psql COPY pipe: \(error.localizedDescription)")) }
        }
        let elapsed = ContinuousClock.now - start
        guard status == 0 else { throw BenchError("the psql COPY pipe exited with status \(status)") }
        return elapsed
    }
}
