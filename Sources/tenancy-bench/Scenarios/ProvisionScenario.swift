import Foundation
import SchemaDB
import Tenancy

/// Scenario 1: provisioning N tenants with the migration set, one at a time and C at a time,
/// against the same DDL run by `psql -f` in one session, one transaction per tenant (the mean
/// of a run before and a run after).
enum ProvisionScenario {
    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.tenants
        let concurrency = context.concurrency

        let script = try await context.withPool(connections: 1) { pool in
            let migrations = try MigrationSet(directory: context.migrationsDirectory)
            return try (0..<count).map { index in
                let db = pool.database(schema: try SQLIdentifier("bench_psql_\(index)"))
                return try SchemaMigrator(database: db, migrations: migrations, module: "tenant").script(applying: migrations.files, creatingSchema: true)
            }.joined()
        }
        let scriptFile = context.workDirectory.appending(path: "provision.sql")
        try Data(script.utf8).write(to: scriptFile)
        // The baseline runs first and last, so that a change of machine load during the
        // scenario weighs on both sides alike.
        let runBaseline = {
            context.note("provision: psql -f baseline, \(count) tenants in one session")
            let elapsed = try await context.runPSQL(scriptFile)
            try await context.dropSchemas(prefix: "bench_psql_")
            return elapsed
        }
        let firstBaseline = try await runBaseline()
        context.note("provision: \(count) tenants one at a time")
        let sequential = try await provision(context, prefix: "bench_seq_", width: 1)
        context.note("provision: \(count) tenants, \(concurrency) at a time")
        let concurrent = try await provision(context, prefix: "bench_con_", width: concurrency)
        let baseline = (firstBaseline + (try await runBaseline())) / 2

        var result = ScenarioResult("provision")
        let rate = { (elapsed: Duration) in Double(count) / elapsed.seconds }
        result.record("psql_tenants_per_second", "psql -f, one session (baseline, mean of 2)", rate(baseline), unit: "tenants/s")
        result.record("sequential_tenants_per_second", "Tenancy, one at a time", rate(sequential), unit: "tenants/s")
        result.record("concurrent_tenants_per_second", "Tenancy, concurrency \(concurrency)", rate(concurrent), unit: "tenants/s")
        result.record("sequential_vs_psql", "one at a time ÷ psql", baseline.seconds / sequential.seconds, unit: "×")
        result.record("concurrent_vs_psql", "concurrency \(concurrency) ÷ psql", baseline.seconds / concurrent.seconds, unit: "×")
        result.target("concurrent_vs_psql", .atLeast, 1.5)
        return result
    }

    /// Provisions the tenants through `Tenancy.create`, `width` at a time, and drops them after.
    private static func provision(_ context: BenchContext, prefix: String, width: Int) async throws -> Duration {
        let elapsed = try await context.withTenancy(schemaPrefix: prefix, registryPath: try context.freshRegistryPath(prefix), connections: width + 1) { tenancy in
            try await measure {
                _ = try await forEachConcurrently(0..<context.tenants, width: width) { index in
                    let report = try await tenancy.create("tenant-\(index)")
                    guard report.outcome == .provisioned else { throw BenchError("tenant-\(index) was \(report.outcome.rawValue), not provisioned") }
                }
            }
        }
        try await context.dropSchemas(prefix: prefix)
        return elapsed
    }
}
