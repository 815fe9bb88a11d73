import Foundation
import SchemaDB
import Tenancy

/// Moves of a small and a large tenant (by default about 10 MB and 100 MB) to another database
/// of the same server and back: offline, against the same rows streamed by
/// `psql -c "COPY … TO STDOUT" | psql -c "COPY … FROM STDIN"`; and, when the server has
/// `wal_level = logical`, online with a writer running through each move, every acknowledged
/// write looked for on the target.
enum MoveScenario {
    static let targetDatabase = "bench_move_target"

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let migrations = try context.migrationSet(named: "move-migrations", adding: [
            ("900_payload.sql", "CREATE TABLE {{tables.payload}} (id bigserial PRIMARY KEY, n int NOT NULL, body text NOT NULL);"),
        ])
        let logical = try await context.withPool(connections: 1) { pool in
            try await pool.database(schema: nil).execute(try SQLTemplate("DROP DATABASE IF EXISTS \(targetDatabase) WITH (FORCE)"))
            try await pool.database(schema: nil).execute(try SQLTemplate("CREATE DATABASE \(targetDatabase)"))
            return try await pool.database(schema: nil).fetchValue("SELECT current_setting('wal_level')", as: String.self) == "logical"
        }
        var target = context.databaseConfig(connections: 4)
        target.database = targetDatabase
        var result = ScenarioResult("move")
        try await context.withTenancy(schemaPrefix: "bench_mv_", registryPath: try context.freshRegistryPath("move"), migrations: migrations, connections: 8) { tenancy in
            try await tenancy.addPlacement("target", database: target)
            for (label, rows) in [("small", max(1, context.moveRows / 10)), ("large", context.moveRows)] {
                let slug = "move-\(label)"
                let tenant = try await tenancy.create(slug, placement: Placement.defaultName).tenant
                let db = try await tenancy.database(for: slug)
                try await db.execute("INSERT INTO {{tables.payload}} (n, body) SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, $1) i", rows)
                let bytes = try await db.fetchValue("SELECT pg_total_relation_size($1::regclass)", "\(SQLIdentifier.quote(tenant.schema)).payload", as: Int64.self) ?? 0
                result.record("\(label)_megabytes", "tenant size", Double(bytes) / 1_048_576, unit: "MB")

                context.note("move: tenant of \(bytes / 1_048_576) MB, offline, to another database")
                let away = try await tenancy.move(slug, to: "target", mode: .offline)
                context.note("move: the same rows through psql COPY pipes (baseline)")
                let baseline = try await copyThroughPSQL(context, schema: tenant.schema, target: target)
                context.note("move: back again, offline")
                let back = try await tenancy.move(slug, to: Placement.defaultName, mode: .offline)
                let seconds = Double(away.totalMilliseconds + back.totalMilliseconds) / 2000
                result.record("\(label)_offline_seconds", "offline move, mean of there and back", seconds, unit: "s")
                result.record("\(label)_psql_copy_seconds", "psql COPY pipe of the same rows (baseline)", baseline.seconds, unit: "s")
                result.record("\(label)_offline_vs_copy", "offline move ÷ bare COPY (a move also locks, creates, checks every row and switches)", seconds / baseline.seconds, unit: "×")

                if logical {
                    context.note("move: online there and back, a writer running")
                    let online = try await movesWithWriter(tenancy, slug: slug, there: "target")
                    result.record("\(label)_online_seconds", "online move, mean of there and back", online.seconds, unit: "s")
                    result.record("\(label)_online_freeze_ms_max", "writes held during an online move (catch-up, check, switch), longer of the two", online.freezeMilliseconds, unit: "ms")
                    result.record("\(label)_online_longest_write_ms", "longest write (first attempt to acknowledgement, refused writes retried) during the moves", online.longestWriteMilliseconds, unit: "ms")
                    result.target("\(label)_online_longest_write_ms", .atMost, 1000)
                    result.record("\(label)_online_writes_acknowledged", "writes acknowledged by the writer during the moves", Double(online.acknowledged), unit: "writes")
                    result.record("\(label)_online_writes_lost", "acknowledged writes not found after the moves", Double(online.lost), unit: "writes")
                    result.target("\(label)_online_writes_lost", .atMost, 0)
                }
                _ = try await tenancy.delete(slug, confirmingDataLoss: true)
            }
            _ = try await tenancy.dropMovedAwaySchemas()
        }
        if !logical { context.note("move: the server has wal_level = replica; online moves not measured (scripts/bench starts one with logical)") }
        try await context.dropSchemas(prefix: "bench_mv_")
        _ = try await context.withPool(connections: 1) { pool in
            try await pool.database(schema: nil).execute(try SQLTemplate("DROP DATABASE IF EXISTS \(targetDatabase) WITH (FORCE)"))
        }
        return result
    }

    /// Moves `slug` online to `there` and back while a writer inserts rows through the
    /// directory (a refused write is retried until acknowledged, as an application would),
    /// then looks for every acknowledged row.
    /// - Returns: The mean move time, the longer hold the moves report, the longest time a
    ///   write took from its first attempt to its acknowledgement, and the writes.
    private static func movesWithWriter(_ tenancy: Tenancy, slug: String, there: String) async throws -> (
        seconds: Double, freezeMilliseconds: Double, longestWriteMilliseconds: Double, acknowledged: Int, lost: Int
    ) {
        let writer = Task {
            var (index, acknowledged, longest) = (0, [Int](), Duration.zero)
            while !Task.isCancelled {
                index += 1
                let first = ContinuousClock.now
                while !Task.isCancelled {
                    do {
                        try await tenancy.database(for: slug).execute("INSERT INTO {{tables.payload}} (n, body) VALUES ($1, 'writer')", -index)
                        acknowledged.append(-index)
                        longest = max(longest, ContinuousClock.now - first)
                        break
                    } catch {
                        try? await Task.sleep(for: .milliseconds(2))
                    }
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
            return (acknowledged, longest)
        }
        let away = try await tenancy.move(slug, to: there, mode: .online)
        let back = try await tenancy.move(slug, to: Placement.defaultName, mode: .online)
        try await Task.sleep(for: .milliseconds(100))
        writer.cancel()
        let (acknowledged, longest) = await writer.value
        let found = Set(try await tenancy.database(for: slug).fetchAll("SELECT n FROM {{tables.payload}} WHERE n < 0", as: Int.self))
        return (Double(away.totalMilliseconds + back.totalMilliseconds) / 2000, Double(max(away.refusedMilliseconds, back.refusedMilliseconds)),
                Double(longest.wholeMilliseconds), acknowledged.count, acknowledged.filter { !found.contains($0) }.count)
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
