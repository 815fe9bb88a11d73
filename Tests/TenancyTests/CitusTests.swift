import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// Tenancy on a Citus 12+ coordinator with schema-based sharding. Citus cannot be installed
/// from this project's package sources, so this suite runs only when `CITUS_URL` names a
/// coordinator; it is the one suite that is not run otherwise.
/// The Citus coordinator of `CITUS_URL`, when set.
let citusCoordinator = ProcessInfo.processInfo.environment["CITUS_URL"].flatMap { $0.isEmpty ? nil : $0 }

@Suite(.enabled(if: citusCoordinator != nil, "CITUS_URL is not set: Citus cannot be installed from this machine's package sources, so the Citus suite did not run"),
       .timeLimit(.minutes(3)))
struct CitusTests {
    @Test func tenantSchemasAreDistributedServedMigratedAndDeleted() async throws {
        var config = try DatabaseConfig(url: try #require(citusCoordinator))
        config.retry = .none
        config.maximumConnections = 8
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-citus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tenant-migrations"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let migrations = directory.appendingPathComponent("tenant-migrations")
        try "CREATE TABLE {{tables.accounts}} (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);"
            .write(to: migrations.appendingPathComponent("001_accounts.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE {{tables.invoices}} (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES {{tables.accounts}} (id), total numeric NOT NULL);"
            .write(to: migrations.appendingPathComponent("002_invoices.sql"), atomically: true, encoding: .utf8)

        var configuration = Tenancy.Configuration()
        configuration.registry = .sqlite(path: directory.appendingPathComponent("registry.sqlite").path)
        configuration.migrationsDirectory = migrations
        configuration.schemaPrefix = TestPostgres.makeUniqueName(prefix: "citus") + "_"
        configuration.listensForChanges = false
        let tenancy = try Tenancy(databaseConfig: config, configuration: configuration, logger: TenancyFixture.silent)
        try await PlacementTests.running(tenancy) {
            let coordinator = tenancy.pool.database(schema: nil)
            #expect(try await coordinator.fetchValue("SELECT extversion FROM pg_extension WHERE extname = 'citus'", as: String.self) != nil)
            var schemas: [String] = []
            for slug in ["acme", "globex"] {
                let schema = try await tenancy.create(slug).tenant.schema
                schemas.append(schema)
                _ = try await coordinator.fetchAll("SELECT citus_schema_distribute($1)", schema)
            }
            let distributed = try await coordinator.fetchValue(
                "SELECT count(*) FROM pg_dist_schema WHERE schemaid::regnamespace::text = ANY($1)", schemas, as: Int64.self)
            #expect(distributed == 2)

            let acme = try await tenancy.database(for: "acme")
            let id = try await acme.insertReturningID("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test", as: Int64.self)
            try await acme.execute("INSERT INTO {{tables.invoices}} (account_id, total) VALUES ($1, 10)", id)

            // A release after distribution: the DDL reaches the workers through the coordinator.
            try "ALTER TABLE {{tables.invoices}} ADD COLUMN due_on date;"
                .write(to: migrations.appendingPathComponent("003_due_dates.sql"), atomically: true, encoding: .utf8)
            let upgraded = try Tenancy(databaseConfig: config, configuration: configuration, logger: TenancyFixture.silent)
            try await PlacementTests.running(upgraded) {
                let run = try await upgraded.migrateAllTenants()
                #expect(run.run.counts.succeeded == 2)
                let due = try await upgraded.database(for: "acme").fetchValue("SELECT count(due_on) FROM {{tables.invoices}}", as: Int64.self)
                #expect(due == 0)
                for slug in ["acme", "globex"] { _ = try await upgraded.delete(slug, confirmingDataLoss: true) }
            }
        }
    }
}
