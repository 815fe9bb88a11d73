import Foundation
import Hummingbird
import HummingbirdTesting
import InMemoryLogging
import Logging
import SchemaDB
import Tenancy
import Testing
@testable import TenantService

@Suite(integration, .timeLimit(.minutes(3)))
struct StartupAndReplicaTests {
    @Test func aTenantFailingItsMigrationAtStartIsRefusedAndTheServiceServesTheOthers() async throws {
        try await ServiceFixture.run { fixture in
            for slug in ["good", "bad"] { try await fixture.operatorTenancy.create(slug) }
            // Data in "bad" that the next release's constraint refuses.
            try await fixture.pool.database(schema: try await fixture.schema(of: "bad"))
                .execute("INSERT INTO {{tables.accounts}} (email, name) VALUES ('x@bad.test', '')")
            try "ALTER TABLE {{tables.accounts}} ADD CONSTRAINT accounts_named CHECK (name <> '');"
                .write(to: fixture.migrations.appendingPathComponent("006_named_accounts.sql"), atomically: true, encoding: .utf8)

            let logs = InMemoryLogHandler()
            try await fixture.replica(logger: Logger(label: "svc", factory: { _ in logs })).test(.router) { client async throws in
                #expect(try await client.send("/accounts", tenant: "good").status == .ok)
                let refused = try await client.send("/accounts", tenant: "bad")
                #expect(refused.status == .serviceUnavailable && refused.headers[.retryAfter] != nil)
                #expect(!refused.text.contains("006") && !refused.text.contains("x@bad.test"))
            }
            #expect(logs.entries.contains { $0.level == .error && $0.message.description.contains("tenant migration failed at start-up") && $0.metadata["tenant.slug"] == "bad" })
            #expect(!logs.entries.contains { "\($0.metadata)".contains("x@bad.test") }, "no data value in the logs")
        }
    }

    @Test func aReplicaThatDoesNotMigrateRefusesTenantsBehindItsMigrationSet() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.create("acme")
            try "CREATE TABLE {{tables.notes}} (id int);".write(to: fixture.migrations.appendingPathComponent("006_notes.sql"), atomically: true, encoding: .utf8)
            try await fixture.replica(configure: { $0.startup.migrates = false }).test(.router) { client async throws in
                #expect(try await client.send("/accounts", tenant: "acme").status == .serviceUnavailable)
                // The deploy job migrates; the replica serves acme within a second or so, with no restart.
                var migrator = Tenancy.Configuration()
                migrator.registry = .postgres(schema: fixture.registrySchema)
                migrator.migrationsDirectory = fixture.migrations
                migrator.schemaPrefix = fixture.schemaPrefix
                migrator.listensForChanges = false
                try await Tenancy(pool: fixture.pool, configuration: migrator, logger: ServiceFixture.silent).migrateAllTenants()
                try await eventually("acme is served once migrated") { try await client.send("/accounts", tenant: "acme").status == .ok }
            }
        }
    }

    @Test func aReplicaWithoutARegistryRefusesToStart() async throws {
        try await ServiceFixture.run { fixture in
            // No `tenantctl init` was run: the PostgreSQL registry's schema does not exist.
            await #expect { try await fixture.replica().test(.router) { _ async throws in } } throws: {
                ($0 as? TenancyError)?.code == .registryNotFound
            }
            let registries = try await fixture.pool.database(schema: nil).fetchValue(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", fixture.registrySchema, as: Int.self)
            #expect(registries == 0, "no empty registry was created")
            let missing = fixture.directory.appendingPathComponent("missing.sqlite").path
            #expect { _ = try fixture.replica(configure: { $0.tenancy.registry = .sqlite(path: missing) }) } throws: {
                ($0 as? TenancyError)?.code == .registryNotFound
            }
            #expect(!FileManager.default.fileExists(atPath: missing))
        }
    }

    @Test func twoReplicasRefuseASuspendedRenamedOrDroppedTenantAtOnce() async throws {
        try await ServiceFixture.run { fixture in
            let operatorTenancy = fixture.operatorTenancy
            try await operatorTenancy.create("acme")
            try await fixture.replica().test(.router) { one async throws in
                try await fixture.replica().test(.router) { two async throws in
                    let replicas = [one, two]
                    for replica in replicas {
                        try await eventually("the replica listens for changes") { try await replica.send("/ready").status == .ok }
                        #expect(try await replica.send("/accounts", tenant: "acme").status == .ok, "cached from here on")
                    }
                    func statuses(_ tenant: String) async throws -> [HTTPResponse.Status] {
                        var statuses: [HTTPResponse.Status] = []
                        for replica in replicas { statuses.append(try await replica.send("/accounts", tenant: tenant).status) }
                        return statuses
                    }

                    // Each change by tenantctl, a process of its own, as an operator runs it.
                    try await fixture.tenantctl("suspend", "acme")
                    let suspended = try await eventually("both refuse the suspended tenant") { try await statuses("acme") == [.forbidden, .forbidden] }
                    try await fixture.tenantctl("resume", "acme")
                    try await eventually("both serve it again") { try await statuses("acme") == [.ok, .ok] }
                    try await fixture.tenantctl("rename", "acme", "acme-old")
                    let renamed = try await eventually("both forget the old slug") { try await statuses("acme") == [.notFound, .notFound] }
                    #expect(try await statuses("acme-old") == [.ok, .ok])
                    // The released slug cannot route to the renamed tenant's schema: it is not free yet.
                    await #expect { try await operatorTenancy.create("acme") } throws: { ($0 as? TenancyError)?.code == .slugRecentlyReleased }
                    try await fixture.tenantctl("drop", "acme-old", "--yes")
                    let dropped = try await eventually("both refuse the dropped tenant") { try await statuses("acme-old") == [.gone, .gone] }
                    // Announced, not expired: measured from the end of the tenantctl process, well
                    // inside the directory's 1 s unconfirmed time to live.
                    for waited in [suspended, renamed, dropped] { #expect(waited < .milliseconds(900)) }
                }
            }
        }
    }
}
