import Foundation
import GRDB
import Testing
@testable import Tenancy

@Suite struct TenantSlugTests {
    @Test(arguments: ["ab", "acme", "acme-corp", "a1", "x-2-y", String(repeating: "a", count: 50)])
    func validSlugsAreAccepted(slug: String) throws {
        #expect(try TenantSlug(slug).rawValue == slug)
    }

    @Test(arguments: [
        "", "a", String(repeating: "a", count: 51), "Acme", "1acme", "-acme", "acme-", "acme_corp", "acme corp",
        "acme'; DROP TABLE tenants; --", "acme\"", "ténant", "acme\n", "😀😀", "public", "postgres", "pg-catalog", "information-schema",
    ])
    func hostileAndReservedSlugsAreRefusedWithTheReason(slug: String) {
        #expect(TenantSlug.problem(with: slug) != nil)
        #expect {
            _ = try TenantSlug(slug)
        } throws: { error in
            let error = error as? TenancyError
            return error?.code == .invalidSlug && error?.description.contains("\n") == false
        }
    }
}

@Suite struct TenantRegistryTests {
    let level = MigrationLevel(lastFile: "002_b.sql", setChecksum: "abc")

    @Test func provisioningThenActivatingRecordsStateLevelAndEvents() async throws {
        let registry = try TenantRegistry.inMemory()
        let slug = try TenantSlug("acme")
        let (row, wasStuck) = try await registry.beginProvisioning(slug: slug, displayName: "Acme", makeSchema: { "tenant_1" })
        #expect(!wasStuck)
        #expect(row.state == .provisioning)
        try await registry.transition(id: row.id, to: .active, event: "provisioned", level: level)
        let tenant = try #require(try await registry.tenant(slug: slug))
        #expect(tenant.state == .active)
        #expect(tenant.schema == "tenant_1")
        #expect(tenant.displayName == "Acme")
        #expect(tenant.migrationLevel == level)
        #expect(try await registry.events(for: slug).map(\.kind) == ["provisioned", "provisioning"])
    }

    @Test func illegalTransitionsAreRefusedAndChangeNothing() async throws {
        let registry = try TenantRegistry.inMemory()
        let slug = try TenantSlug("acme")
        let row = try await registry.beginProvisioning(slug: slug, displayName: nil, makeSchema: { "tenant_1" }).tenant
        await #expect { try await registry.transition(id: row.id, to: .suspended, event: "suspended") } throws: {
            ($0 as? TenancyError)?.code == .illegalTransition
        }
        try await registry.transition(id: row.id, to: .active, event: "provisioned")
        try await registry.transition(id: row.id, to: .deleted, event: "deleted")
        await #expect { try await registry.transition(id: row.id, to: .active, event: "resumed") } throws: {
            ($0 as? TenancyError)?.code == .tenantDeleted
        }
        #expect(try await registry.tenant(slug: slug)?.state == .deleted)
        #expect(try await registry.events(for: slug).count == 3)
    }

    @Test(arguments: TenantState.allCases)
    func theLifecycleAllowsOnlyItsDocumentedMoves(from state: TenantState) {
        let expected: [TenantState: Set<TenantState>] = [
            .provisioning: [.active, .failed, .spare], .active: [.suspended, .deleted], .suspended: [.active, .deleted],
            .deleted: [], .failed: [.provisioning, .deleted], .spare: [.active, .deleted],
        ]
        for next in TenantState.allCases {
            #expect(state.canMove(to: next) == expected[state]!.contains(next), "\(state) → \(next)")
        }
    }

    @Test func aFailedTenantIsRetriedAndAStuckOneIsReported() async throws {
        let registry = try TenantRegistry.inMemory()
        let slug = try TenantSlug("acme")
        let row = try await registry.beginProvisioning(slug: slug, displayName: nil, makeSchema: { "tenant_1" }).tenant
        #expect(try await registry.beginProvisioning(slug: slug, displayName: nil, makeSchema: { "tenant_2" }).wasStuck)
        try await registry.transition(id: row.id, to: .failed, event: "failed", lastError: "boom")
        #expect(try await registry.tenant(slug: slug)?.lastError == "boom")
        let retry = try await registry.beginProvisioning(slug: slug, displayName: nil, makeSchema: { "tenant_3" })
        #expect(!retry.wasStuck)
        #expect(retry.tenant.state == .provisioning)
        #expect(retry.tenant.schema == "tenant_1")
        #expect(retry.tenant.lastError == nil)
    }

    @Test func renamingKeepsTheSchemaAndRefusesATakenSlug() async throws {
        let registry = try TenantRegistry.inMemory()
        let acme = try TenantSlug("acme")
        let globex = try TenantSlug("globex")
        _ = try await registry.beginProvisioning(slug: acme, displayName: nil, makeSchema: { "tenant_a" })
        _ = try await registry.beginProvisioning(slug: globex, displayName: nil, makeSchema: { "tenant_g" })
        await #expect { try await registry.rename(acme, to: globex) } throws: { ($0 as? TenancyError)?.code == .slugTaken }
        let renamed = try await registry.rename(acme, to: try TenantSlug("acme-inc"))
        #expect(renamed.schema == "tenant_a")
        #expect(try await registry.tenant(slug: acme) == nil)
        #expect(try await registry.events(for: renamed.slug).first?.detail == "acme → acme-inc")
    }

    @Test func claimingASpareIsOneRegistryTransition() async throws {
        let registry = try TenantRegistry.inMemory()
        let spare = try await registry.beginSpare(schema: "tenant_s")
        // Still provisioning: not a spare yet, so it cannot be claimed.
        #expect(try await registry.claimSpare(id: spare, slug: try TenantSlug("early"), displayName: nil) == nil)
        try await registry.transition(id: spare, to: .spare, event: "spare_created", level: level)
        #expect(try await registry.spares().map(\.schema) == ["tenant_s"])
        let claimed = try #require(try await registry.claimSpare(id: spare, slug: try TenantSlug("acme"), displayName: "Acme"))
        #expect(claimed.schema == "tenant_s")
        #expect(claimed.state == .active)
        #expect(claimed.migrationLevel == level)
        #expect(try await registry.spares().isEmpty)
        #expect(try await registry.countByState() == [.active: 1])
        // A second claim of the same row finds it taken.
        #expect(try await registry.claimSpare(id: spare, slug: try TenantSlug("other"), displayName: nil) == nil)
        await #expect { try await registry.claimSpare(id: spare, slug: try TenantSlug("acme"), displayName: nil) } throws: {
            ($0 as? TenancyError)?.code == .slugTaken
        }
    }

    @Test func listingFiltersByStateInSlugOrder() async throws {
        let registry = try TenantRegistry.inMemory()
        for name in ["gamma", "alpha", "beta"] {
            let row = try await registry.beginProvisioning(slug: try TenantSlug(name), displayName: nil, makeSchema: { "tenant_\(name)" }).tenant
            if name != "beta" { try await registry.transition(id: row.id, to: .active, event: "provisioned") }
        }
        #expect(try await registry.tenants().map(\.slug.rawValue) == ["alpha", "beta", "gamma"])
        #expect(try await registry.tenants(in: .active).map(\.slug.rawValue) == ["alpha", "gamma"])
        #expect(try await registry.tenants(limit: 1, offset: 1).map(\.slug.rawValue) == ["beta"])
    }

    @Test func aFileRegistryUsesWALAndManyOpenersOfAFreshFileAllSucceed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("nested/registry.sqlite").path
        let registries = try await withThrowingTaskGroup(of: TenantRegistry.self) { group in
            for _ in 0..<6 { group.addTask { try TenantRegistry(path: path) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(registries.count == 6)
        let mode = try await registries[0].read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        _ = try await registries[1].beginProvisioning(slug: try TenantSlug("shared"), displayName: nil, makeSchema: { "tenant_x" })
        #expect(try await registries[2].tenant(slug: try TenantSlug("shared"))?.schema == "tenant_x")
    }

    @Test func anUnwritableLocationIsAClearError() {
        #expect { _ = try TenantRegistry(path: "/proc/tenancy/registry.sqlite") } throws: {
            ($0 as? TenancyError)?.code == .registryFailed && "\($0)".contains("/proc/tenancy")
        }
    }
}
