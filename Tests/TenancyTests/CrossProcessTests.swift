import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// One `Tenancy` serves tenants (its own connections, running, listening), another changes
/// them, as a replica and an operator's tenantctl would. The server's entries live 30 s, so a
/// change seen within seconds was seen through its announcement.
@Suite(integration, .timeLimit(.minutes(2)))
struct CrossProcessTests {
    static let announced: Duration = .seconds(3)

    @Test(arguments: StoreKind.allCases)
    func everyLifecycleChangeByAnotherProcessReachesTheServerAtOnce(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let operatorProcess = try fixture.makeTenancy()
            let acme = try await operatorProcess.create("acme").tenant
            try await operatorProcess.create("globex")
            try await fixture.withServer { server in
                #expect(try await server.database(for: "acme").schema?.name == acme.schema)
                _ = try await server.database(for: "globex")

                try await operatorProcess.suspend("acme")
                try await eventually("the server refuses the suspended tenant", timeout: Self.announced) {
                    await errorCode { try await server.database(for: "acme") } == .tenantSuspended
                }
                try await operatorProcess.resume("acme")
                try await eventually("the server serves the resumed tenant", timeout: Self.announced) {
                    await errorCode { try await server.database(for: "acme") } == nil
                }
                try await operatorProcess.rename("acme", to: "acme-inc")
                try await eventually("the server forgets the old slug", timeout: Self.announced) {
                    await errorCode { try await server.database(for: "acme") } == .tenantNotFound
                }
                #expect(try await server.database(for: "acme-inc").schema?.name == acme.schema)
                try await operatorProcess.delete("globex", confirmingDataLoss: true)
                try await eventually("the server refuses the deleted tenant", timeout: Self.announced) {
                    await errorCode { try await server.database(for: "globex") } == .tenantDeleted
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLostListenerConnectionDropsTheCacheAndListeningResumes(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let operatorProcess = try fixture.makeTenancy()
            try await operatorProcess.create("acme")
            try await operatorProcess.create("globex")
            let channel = try await operatorProcess.ready().notificationChannel
            try await fixture.withServer { server in
                _ = try await server.database(for: "acme")
                _ = try await server.database(for: "globex")
                #expect(server.directory.statistics.cached == 2)

                let killed = try await fixture.pool.database(schema: nil).fetchValue(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
                    channel, as: Int.self)
                #expect(killed == 1)
                try await eventually("the cache is dropped") { server.directory.statistics.cached == 0 }
                try await eventually("listening resumes") { server.directory.isListeningForChanges }

                _ = try await server.database(for: "acme")
                try await operatorProcess.suspend("acme")
                try await eventually("the server refuses the suspended tenant", timeout: Self.announced) {
                    await errorCode { try await server.database(for: "acme") } == .tenantSuspended
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aReleasedSlugNeverRoutesToTheOldSchemaEvenWhenNoChangeIsAnnounced(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            _ = try await fixture.makeTenancy().ready()
            try await fixture.setSlugReuseDelay(.seconds(3))
            let operatorProcess = try fixture.makeTenancy { $0.directory.timeToLive = .seconds(1) }
            let old = try await operatorProcess.create("acme").tenant
            try await operatorProcess.fillSpares(count: 1)
            // A server that hears no announcement at all: only its entries' time to live helps.
            let server = try fixture.makeTenancy { $0.directory.timeToLive = .seconds(2) }
            #expect(try await server.database(for: "acme").schema?.name == old.schema)

            // The rename is written straight into the registry: nobody announces it.
            let store = try await operatorProcess.registry.ready()
            let record = try #require(try await store.record(slug: "acme"))
            _ = try await store.update(record, TenantChange(slug: try TenantSlug("acme-old"), event: .renamed))
            await #expect { try await operatorProcess.create("acme") } throws: { ($0 as? TenancyError)?.code == .slugRecentlyReleased }

            // Until another tenant holds the slug, the server may still route it to the old
            // tenant (the same tenant under its old name), never to another schema.
            var created: Tenant?
            try await eventually("the slug is free again", timeout: .seconds(10)) {
                if let schema = try? await server.database(for: "acme").schema?.name { #expect(schema == old.schema) }
                created = try? await operatorProcess.create("acme").tenant
                return created != nil
            }
            let new = try #require(created)
            #expect(new.schema != old.schema)
            #expect(try await server.database(for: "acme").schema?.name == new.schema)
            #expect(try await server.database(for: "acme-old").schema?.name == old.schema)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSlugSwapWaitsForTheReuseDelayAndTheServerFollowsIt(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            _ = try await fixture.makeTenancy().ready()
            try await fixture.setSlugReuseDelay(.seconds(2))
            let operatorProcess = try fixture.makeTenancy { $0.directory.timeToLive = .seconds(1) }
            let acme = try await operatorProcess.create("acme").tenant
            let globex = try await operatorProcess.create("globex").tenant
            try await fixture.withServer(configure: { $0.directory.timeToLive = .seconds(1) }) { server in
                _ = try await server.database(for: "acme")
                _ = try await server.database(for: "globex")
                try await operatorProcess.rename("acme", to: "swap-tmp")
                await #expect { try await operatorProcess.rename("globex", to: "acme") } throws: { ($0 as? TenancyError)?.code == .slugRecentlyReleased }
                try await eventually("acme is free for globex", timeout: .seconds(10)) {
                    (try? await operatorProcess.rename("globex", to: "acme")) != nil
                }
                try await eventually("globex is free for the old acme", timeout: .seconds(10)) {
                    (try? await operatorProcess.rename("swap-tmp", to: "globex")) != nil
                }
                try await eventually("the server follows the swap", timeout: Self.announced) {
                    let (first, second) = (try await server.database(for: "acme").schema?.name, try await server.database(for: "globex").schema?.name)
                    return first == globex.schema && second == acme.schema
                }
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDirectoryMayNotOutliveTheSlugReuseDelay(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy { $0.directory.timeToLive = .seconds(90) }
            await #expect { try await tenancy.ready() } throws: { error in
                (error as? TenancyError)?.code == .invalidArgument && "\(error)".contains("slug reuse delay")
            }
            await #expect { try await tenancy.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .invalidArgument }
        }
    }
}
