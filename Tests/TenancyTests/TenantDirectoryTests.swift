import Foundation
import InMemoryLogging
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

@Suite(integration, .timeLimit(.minutes(2)))
struct TenantDirectoryTests {
    @Test(arguments: StoreKind.allCases)
    func hitsComeFromTheCacheAndConcurrentMissesReadTheRegistryOnce(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let schema = try await tenancy.create("acme").tenant.schema
            // A pool whose logger keeps metadata, to see what the handles log with.
            let logger = Logger(label: "t", factory: { _ in InMemoryLogHandler() })
            try await TestPostgres.withPool(logger: logger) { pool in
                let directory = TenantDirectory(placements: PlacementPools(primary: pool, registry: tenancy.registry, logger: logger), registry: tenancy.registry, logger: logger)
                let handles = try await withThrowingTaskGroup(of: String?.self) { group in
                    for _ in 0..<50 { group.addTask { try await directory.database(for: "acme").schema?.name } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(handles == Array(repeating: schema, count: 50))
                #expect(directory.statistics.misses == 1)
                #expect(directory.statistics.cached == 1)
                let hitsBefore = directory.statistics.hits
                let db = try await directory.database(for: "acme")
                #expect(directory.statistics.hits == hitsBefore + 1)
                #expect(directory.statistics.misses == 1)
                #expect(db.logger[metadataKey: TenancyLoggingKeys.tenantSlug] == "acme")
                #expect(db.logger[metadataKey: TenancyLoggingKeys.tenantSchema] == "\(schema)")
                #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 0)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func unknownTenantsGetTheirOwnErrorAndAreNotCached(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            for _ in 0..<3 {
                await #expect { try await tenancy.database(for: "nobody") } throws: {
                    ($0 as? TenancyError)?.code == .tenantNotFound && "\($0)".contains("nobody")
                }
            }
            #expect(tenancy.directory.statistics.cached == 0)
            // Created later, it is found at once.
            _ = try await tenancy.create("nobody")
            #expect(try await tenancy.database(for: "nobody").schema != nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func theLeastRecentlyUsedTenantIsEvicted(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            for slug in ["t1", "t2", "t3"] { _ = try await tenancy.create(slug) }
            var configuration = TenantDirectory.Configuration()
            configuration.capacity = 2
            let directory = TenantDirectory(placements: PlacementPools(primary: fixture.pool, registry: tenancy.registry, logger: Logger(label: "t")), registry: tenancy.registry, configuration: configuration, logger: Logger(label: "t"))
            _ = try await directory.database(for: "t1")
            _ = try await directory.database(for: "t2")
            _ = try await directory.database(for: "t1")  // t2 is now the least recently used
            _ = try await directory.database(for: "t3")  // evicts t2
            #expect(directory.statistics.evictions == 1)
            #expect(directory.statistics.cached == 2)
            let missesBefore = directory.statistics.misses
            _ = try await directory.database(for: "t1")
            _ = try await directory.database(for: "t3")
            #expect(directory.statistics.misses == missesBefore)
            _ = try await directory.database(for: "t2")
            #expect(directory.statistics.misses == missesBefore + 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func changesByAnotherProcessAreSeenAfterTheTimeToLive(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let server = try fixture.makeTenancy { $0.directory.timeToLive = .seconds(4) }
            let operatorProcess = try fixture.makeTenancy()
            _ = try await operatorProcess.create("acme")
            _ = try await server.database(for: "acme")
            try await operatorProcess.suspend("acme")
            // Still cached in the server process...
            _ = try await server.database(for: "acme")
            try await Task.sleep(for: .milliseconds(4200))
            // ...until the entry expires.
            await #expect { try await server.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .tenantSuspended }
        }
    }
}
