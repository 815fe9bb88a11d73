import Foundation
import SchemaDB
import Tenancy

/// Scenario 6: listing and counting a registry of 100,000 tenants, in each store.
enum RegistryScenario {
    static let repetitions = 5

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.registryRows
        var result = ScenarioResult("registry")
        result.record("rows", "tenants in each registry", Double(count), unit: "rows")

        let path = try context.freshRegistryPath("registry")
        context.note("registry: seeding \(count) tenants in SQLite and in PostgreSQL, listing and counting each \(repetitions) times")
        // Mostly active, with some suspended and deleted tenants, as a registry in use has.
        try RegistrySeeder.seed(path: path, count: count, schemaPrefix: "bench_reg_") { index in
            index % 100 == 0 ? .deleted : index % 50 == 0 ? .suspended : .active
        }
        let (list, countByState) = try await timeListing(try TenantRegistry(path: path), count: count)
        result.record("list_ms", "SQLite: list every tenant, median of \(repetitions)", list.median, unit: "ms")
        result.record("count_ms", "SQLite: count by state, median of \(repetitions)", countByState.median, unit: "ms")

        let schema = BenchStore.schemaPrefix + "listing"
        try await context.dropSchemas(prefix: schema)
        try await context.withPool(connections: 2) { pool in
            let registry = try TenantRegistry(pool: pool, schema: schema, creatingIfMissing: true)
            _ = try await registry.info()
            try await pool.database(schema: try SQLIdentifier(schema)).execute(
                """
                INSERT INTO {{tables.tenants}} (slug, schema_name, state)
                SELECT 'tenant-' || i, 'bench_reg_' || i,
                       CASE WHEN i % 100 = 0 THEN 'deleted' WHEN i % 50 = 0 THEN 'suspended' ELSE 'active' END
                FROM generate_series(0, $1 - 1) AS i
                """, count)
            let (list, countByState) = try await timeListing(registry, count: count)
            result.record("postgres_list_ms", "PostgreSQL: list every tenant, median of \(repetitions)", list.median, unit: "ms")
            result.record("postgres_count_ms", "PostgreSQL: count by state, median of \(repetitions)", countByState.median, unit: "ms")
        }
        try await context.dropSchemas(prefix: schema)
        result.target("list_ms", .atMost, 1_000)
        result.target("postgres_list_ms", .atMost, 1_000)
        return result
    }

    private static func timeListing(_ registry: TenantRegistry, count: Int) async throws -> (list: Samples, countByState: Samples) {
        var list = Samples()
        var countByState = Samples()
        for _ in 0..<repetitions {
            var listed = 0
            list.append(try await measure { listed = try await registry.tenants().count }.milliseconds)
            var counted = 0
            countByState.append(try await measure { counted = try await registry.countByState().values.reduce(0, +) }.milliseconds)
            guard listed == count, counted == count else {
                throw BenchError("the registry listed \(listed) and counted \(counted) tenants, not \(count)")
            }
        }
        return (list, countByState)
    }
}
