import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Tenancy
import Testing
import VaporTesting
@testable import VaporTenantService

@Suite(.enabled(if: TestPostgres.isConfigured || TestPostgres.isCI, "needs DATABASE_URL"), .timeLimit(.minutes(3)))
struct VaporServiceTests {
    static let repositoryMigrations = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tenant-migrations")

    @Test func tenantsAreServedFromTheirSchemaAndRefusedWithTheirStatus() async throws {
        let prefix = TestPostgres.makeUniqueName(prefix: "vap") + "_"
        let registrySchema = TestPostgres.makeUniqueName(prefix: "vapreg")
        var configuration = Tenancy.Configuration()
        configuration.registry = .postgres(schema: registrySchema)
        configuration.migrationsDirectory = Self.repositoryMigrations
        configuration.schemaPrefix = prefix
        try await TestPostgres.withPool { pool in
            var operatorConfiguration = configuration
            operatorConfiguration.listensForChanges = false
            let operatorTenancy = try Tenancy(pool: pool, configuration: operatorConfiguration, logger: Logger(label: "operator"))
            do {
                for slug in ["acme", "globex", "paused"] { try await operatorTenancy.create(slug) }
                try await operatorTenancy.suspend("paused")
                try await withApp { app in
                    try configure(app, database: try TestPostgres.makeTestConfiguration(), tenancy: configuration)
                    try await app.asyncBoot()
                    let tester = try app.testing()
                    try await tester.test(.POST, "accounts", headers: ["X-Tenant": "acme", "Content-Type": "application/json"],
                                          body: ByteBuffer(string: #"{"email": "a@acme.test", "name": "A"}"#)) { response in
                        #expect(response.status == .created)
                    }
                    try await tester.test(.GET, "accounts", headers: ["X-Tenant": "acme"]) { response in
                        #expect(response.status == .ok && response.body.string.contains("a@acme.test"))
                    }
                    try await tester.test(.GET, "accounts", headers: ["X-Tenant": "globex"]) { response in
                        #expect(response.body.string == "[]")
                    }
                    for (tenant, status) in [("paused", HTTPStatus.forbidden), ("nobody", .notFound)] {
                        try await tester.test(.GET, "accounts", headers: ["X-Tenant": tenant]) { response in
                            #expect(response.status == status && !response.body.string.contains(prefix))
                        }
                    }
                    // Suspended by another process while this app serves it: refused at once.
                    try await operatorTenancy.suspend("globex")
                    var refused = false
                    for _ in 0..<200 where !refused {
                        try await tester.test(.GET, "accounts", headers: ["X-Tenant": "globex"]) { refused = $0.status == .forbidden }
                        if !refused { try await Task.sleep(for: .milliseconds(10)) }
                    }
                    #expect(refused)
                }
            } catch {
                await drop(pool, prefix: prefix, registry: registrySchema)
                throw error
            }
            await drop(pool, prefix: prefix, registry: registrySchema)
        }
    }

    func drop(_ pool: DatabasePool, prefix: String, registry: String) async {
        let schemas = (try? await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) OR nspname = $2", prefix, registry, as: String.self)) ?? []
        for schema in schemas {
            if let schema = try? SQLIdentifier(schema) { try? await pool.database(schema: schema).dropSchema(cascade: true) }
        }
    }
}
