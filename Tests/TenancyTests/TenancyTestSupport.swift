import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

let integration = Testing.ConditionTrait.enabled(if: TestPostgres.isConfigured, "needs DATABASE_URL or POSTGRES_HOSTNAME")

/// A tenant migration set, a registry file and a `Tenancy` over a test pool, removed afterwards
/// together with every schema the test's tenants and spares used.
struct TenancyFixture {
    let directory: URL
    let pool: DatabasePool
    /// The schema prefix of this test's tenants, unique so that tests running at once never
    /// share a fleet lock or see each other's schemas.
    let schemaPrefix = TestPostgres.makeUniqueName(prefix: "tt") + "_"

    static let migrations = [
        "001_accounts.sql": """
            CREATE TABLE {{tables.accounts}} (id serial PRIMARY KEY, email text NOT NULL UNIQUE, balance int NOT NULL DEFAULT 0);
            """,
        "002_invoices.sql": """
            CREATE TABLE {{tables.invoices}} (id serial PRIMARY KEY, account_id int NOT NULL REFERENCES {{tables.accounts}} (id), total numeric NOT NULL);
            CREATE INDEX invoices_account ON {{tables.invoices}} (account_id);
            """,
    ]

    var migrationsURL: URL { directory.appendingPathComponent("tenant-migrations") }
    var registryPath: String { directory.appendingPathComponent("registry.sqlite").path }

    func writeMigration(_ name: String, _ content: String) throws {
        try content.write(to: migrationsURL.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    func makeTenancy(configure: (inout Tenancy.Configuration) -> Void = { _ in }) throws -> Tenancy {
        var configuration = Tenancy.Configuration()
        configuration.registryPath = registryPath
        configuration.migrationsDirectory = migrationsURL
        configuration.provisioner.schemaPrefix = schemaPrefix
        configure(&configuration)
        return try Tenancy(pool: pool, configuration: configuration, logger: Logger(label: "tenancy.tests", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// Every schema of this test's registry that exists in the database.
    func existingSchemas() async throws -> [String] {
        let registry = try TenantRegistry(path: registryPath)
        let known = try await registry.schemaStates().map(\.schema)
        return try await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname", known, as: String.self)
    }

    static func run(_ body: (TenancyFixture) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tenant-migrations"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestPostgres.withPool { pool in
            let fixture = TenancyFixture(directory: directory, pool: pool)
            for (name, content) in migrations { try fixture.writeMigration(name, content) }
            do {
                try await body(fixture)
            } catch {
                await fixture.dropSchemas()
                throw error
            }
            await fixture.dropSchemas()
        }
    }

    private func dropSchemas() async {
        guard let registry = try? TenantRegistry(path: registryPath), let rows = try? await registry.schemaStates() else { return }
        for row in rows {
            if let schema = try? SQLIdentifier(row.schema) { try? await pool.database(schema: schema).dropSchema(cascade: true) }
        }
    }
}
