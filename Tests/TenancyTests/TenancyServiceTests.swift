import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
@testable import Tenancy

@Suite(integration, .timeLimit(.minutes(2)))
struct TenancyServiceTests {
    @Test(arguments: StoreKind.allCases)
    func aTenancyWithItsOwnPoolServesTenantsInAServiceGroupAndStopsOnShutdown(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            var configuration = Tenancy.Configuration()
            configuration.registry = fixture.registryLocation
            configuration.migrationsDirectory = fixture.migrationsURL
            configuration.schemaPrefix = fixture.schemaPrefix
            let logger = Logger(label: "tenancy.tests", factory: { _ in SwiftLogNoOpLogHandler() })
            let tenancy = try Tenancy(databaseConfig: try TestPostgres.makeTestConfiguration(), configuration: configuration, logger: logger)
            #expect(tenancy.pool.isOwned)

            try await testGracefulShutdown { trigger in
                let group = ServiceGroup(services: [tenancy], logger: logger)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await group.run() }
                    try await tenancy.pool.checkConnection()
                    try await tenancy.create("acme")
                    let acme = try await tenancy.database(for: "acme")
                    try await acme.execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test")
                    #expect(try await acme.fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 1)
                    trigger.triggerGracefulShutdown()
                    try await tasks.waitForAll()
                }
            }
            // The group returned, so the owned pool is closed: its handles no longer reach the server.
            await #expect(throws: (any Error).self) {
                try await tenancy.database(for: "acme").fetchValue("SELECT 1", as: Int.self)
            }
        }
    }
}
