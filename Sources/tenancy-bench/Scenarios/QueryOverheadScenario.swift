import Foundation
import PostgresNIO
import SchemaDB
import Tenancy

/// Scenario 3: a primary-key lookup through a tenant handle from the directory, against the
/// same rendered SQL sent through raw postgres-nio on the same `PostgresClient`. The paths
/// alternate in blocks of 500 calls so that they see the same machine load; a third path, raw
/// postgres-nio again, measures how far two identical paths drift apart in the same run.
enum QueryOverheadScenario {
    static let blockSize = 500
    static let accounts = 1_000

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let connections = context.concurrency
        let blocks = max(1, context.queryCalls / blockSize)
        context.note("query: \(blocks * blockSize) lookups through a tenant handle, through raw postgres-nio and through raw postgres-nio again")
        let registry = try context.freshRegistryPath("query")
        // The tenant is set up over other connections, so both paths measure fresh sessions.
        try await context.withTenancy(schemaPrefix: "bench_query_", registryPath: registry, connections: 1) { tenancy in
            try await tenancy.create("query")
            try await tenancy.database(for: "query").execute(
                "INSERT INTO {{tables.accounts}} (email, name) SELECT 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, $1::int) AS i",
                accounts)
        }
        // Both paths run over the same client (Tenancy borrows it, as an embedding app's does),
        // so they share connections and event loops and the ratio is the library's own cost.
        let client = PostgresClient(configuration: try context.databaseConfig(connections: connections).makePostgresClientConfiguration(), backgroundLogger: context.logger)
        let (handle, raw, control) = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let tenancy = try Tenancy(
                client: client, maximumConnections: connections,
                configuration: context.tenancyConfiguration(schemaPrefix: "bench_query_", registry: .sqlite(path: registry)), logger: context.logger)
            let db = try await tenancy.database(for: "query")
            let template: SQLTemplate = "SELECT name FROM {{tables.accounts}} WHERE id = $1"
            let rendered = try db.render(template)
            var next = 0
            func nextID() -> Int64 {
                next = next % accounts + 1
                return Int64(next)
            }
            func handleBlock() async throws -> Samples {
                var samples = Samples()
                for _ in 0..<blockSize {
                    let id = nextID()
                    let start = ContinuousClock.now
                    let name = try await tenancy.database(for: "query").fetchValue(template, id, as: String.self)
                    samples.append((ContinuousClock.now - start).microseconds)
                    guard name != nil else { throw BenchError("account \(id) not found through the handle") }
                }
                return samples
            }
            func rawBlock() async throws -> Samples {
                var samples = Samples()
                for _ in 0..<blockSize {
                    let id = nextID()
                    let start = ContinuousClock.now
                    var bindings = PostgresBindings(capacity: 1)
                    bindings.append(id)
                    var name: String?
                    for try await value in try await client.query(PostgresQuery(unsafeSQL: rendered, binds: bindings), logger: context.logger).decode(String.self) {
                        name = value
                    }
                    samples.append((ContinuousClock.now - start).microseconds)
                    guard name != nil else { throw BenchError("account \(id) not found through postgres-nio") }
                }
                return samples
            }
            _ = try await handleBlock()
            _ = try await rawBlock()
            // Every order of the three paths in turn, so that none is favoured by its position.
            let orders = [[0, 1, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0], [1, 0, 2], [0, 2, 1]]
            var samples = [Samples](repeating: Samples(), count: 3)
            for block in 0..<blocks {
                for path in orders[block % orders.count] {
                    samples[path].append(contentsOf: try await path == 0 ? handleBlock() : rawBlock())
                }
            }
            return (samples[0], samples[1], samples[2])
        }
        try await context.dropSchemas(prefix: "bench_query_")

        var result = ScenarioResult("query")
        result.record("calls", "lookups through each path", Double(handle.count), unit: "calls")
        result.record("raw_mean_us", "raw postgres-nio, mean (baseline)", raw.mean, unit: "µs")
        result.record("raw_median_us", "raw postgres-nio, median (baseline)", raw.median, unit: "µs")
        result.record("handle_mean_us", "tenant handle, mean", handle.mean, unit: "µs")
        result.record("handle_median_us", "tenant handle, median", handle.median, unit: "µs")
        result.record("mean_ratio", "handle ÷ raw, mean", handle.mean / raw.mean, unit: "×")
        result.record("median_ratio", "handle ÷ raw, median", handle.median / raw.median, unit: "×")
        result.record("control_mean_ratio", "raw again ÷ raw (noise floor), mean", control.mean / raw.mean, unit: "×")
        result.record("control_median_ratio", "raw again ÷ raw (noise floor), median", control.median / raw.median, unit: "×")
        result.target("mean_ratio", .atMost, 1.03)
        result.target("median_ratio", .atMost, 1.03)
        return result
    }
}
