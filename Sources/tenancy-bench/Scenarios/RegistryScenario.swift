import Foundation
import Tenancy

/// Scenario 6: listing and counting a registry of 100,000 tenants.
enum RegistryScenario {
    static let repetitions = 5

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.registryRows
        let path = try context.freshRegistryPath("registry")
        context.note("registry: seeding \(count) tenants, listing and counting them \(repetitions) times")
        // Mostly active, with some suspended and deleted tenants, as a registry in use has.
        try RegistrySeeder.seed(path: path, count: count, schemaPrefix: "bench_reg_") { index in
            index % 100 == 0 ? .deleted : index % 50 == 0 ? .suspended : .active
        }
        let registry = try TenantRegistry(path: path)
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
        var result = ScenarioResult("registry")
        result.record("rows", "tenants in the registry", Double(count), unit: "rows")
        result.record("list_ms", "list every tenant, median of \(repetitions)", list.median, unit: "ms")
        result.record("count_ms", "count by state, median of \(repetitions)", countByState.median, unit: "ms")
        result.target("list_ms", .atMost, 1_000)
        return result
    }
}
