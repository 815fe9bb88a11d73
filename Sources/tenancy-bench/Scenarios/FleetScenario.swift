import Foundation
import SchemaDB
import Tenancy

/// Scenario 2: one new migration file applied to all N tenants by the fleet migrator, at
/// concurrency 1 and C, against the same file run by `psql -f` in one session, one transaction
/// per tenant.
enum FleetScenario {
    static let prefix = "bench_fleet_"

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.tenants
        let concurrency = context.concurrency
        let registry = try context.freshRegistryPath("fleet")

        context.note("fleet: provisioning \(count) tenants")
        try await context.withTenancy(schemaPrefix: prefix, registryPath: registry, connections: concurrency + 1) { tenancy in
            _ = try await forEachConcurrently(0..<count, width: concurrency) { index in try await tenancy.create("tenant-\(index)") }
        }

        let first = try context.migrationSet(named: "fleet-1", adding: [file(1)])
        context.note("fleet: one new file to \(count) tenants, one at a time")
        let sequential = try await migrate(context, migrations: first, registry: registry, concurrency: 1)
        let second = try context.migrationSet(named: "fleet-2", from: first, adding: [file(2)])
        context.note("fleet: one new file to \(count) tenants, \(concurrency) at a time")
        let concurrent = try await migrate(context, migrations: second, registry: registry, concurrency: concurrency)

        context.note("fleet: psql -f baseline, one new file to \(count) tenants in one session")
        let third = try MigrationFile(filename: file(3).0, content: file(3).1)
        let scriptFile = context.workDirectory.appending(path: "fleet.sql")
        let script = try await context.withPool(connections: 1) { pool in
            let schemas = try await context.schemaNames(prefix: prefix, in: pool)
            guard schemas.count == count else { throw BenchError("expected \(count) fleet schemas, found \(schemas.count)") }
            return try schemas.map { name in
                let db = pool.database(schema: try SQLIdentifier(name))
                return try SchemaMigrator(database: db, migrations: MigrationSet(files: [third]), module: "tenant").script(applying: [third], creatingSchema: false)
            }.joined()
        }
        try Data(script.utf8).write(to: scriptFile)
        let baseline = try await context.runPSQL(scriptFile)
        try await context.dropSchemas(prefix: prefix)

        var result = ScenarioResult("fleet")
        let rate = { (elapsed: Duration) in Double(count) / elapsed.seconds }
        result.record("psql_tenants_per_second", "psql -f, one session (baseline)", rate(baseline), unit: "tenants/s")
        result.record("sequential_tenants_per_second", "fleet migrator, concurrency 1", rate(sequential), unit: "tenants/s")
        result.record("concurrent_tenants_per_second", "fleet migrator, concurrency \(concurrency)", rate(concurrent), unit: "tenants/s")
        result.record("concurrent_vs_psql", "concurrency \(concurrency) ÷ psql", baseline.seconds / concurrent.seconds, unit: "×")
        result.target("concurrent_tenants_per_second", .atLeast, 300)
        return result
    }

    /// A one-statement migration: a new column on every tenant's accounts.
    static func file(_ number: Int) -> (String, String) {
        (String(format: "%03d_bench_column_%d.sql", 900 + number, number),
         "ALTER TABLE {{tables.accounts}} ADD COLUMN bench_note_\(number) text;\n")
    }

    /// Runs the fleet migrator over every tenant and checks that each one succeeded.
    private static func migrate(_ context: BenchContext, migrations: URL, registry: String, concurrency: Int) async throws -> Duration {
        try await context.withTenancy(schemaPrefix: prefix, registryPath: registry, migrations: migrations, connections: concurrency + 1) { tenancy in
            var options = FleetMigrator.Options()
            options.concurrency = concurrency
            let start = ContinuousClock.now
            let report = try await tenancy.fleet.run(.all, options: options)
            let elapsed = ContinuousClock.now - start
            guard report.run.status == .completed, report.run.counts.succeeded == context.tenants else {
                throw BenchError("fleet run \(report.run.id) ended \(report.run.status.rawValue) with \(report.run.counts.succeeded) of \(context.tenants) tenants migrated: \(report.failures.first?.error ?? "")")
            }
            return elapsed
        }
    }
}
