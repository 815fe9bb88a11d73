import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

@Suite(integration, .timeLimit(.minutes(2)))
struct ReconcileTests {
    @Test(arguments: StoreKind.allCases)
    func reconcileFindsEveryKindOfDriftAndFixesOnlyTheSafeOnes(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let prefix = fixture.schemaPrefix
            let tenancy = try fixture.makeTenancy()
            let admin = fixture.pool.database(schema: nil)
            for slug in ["healthy", "dropped", "stale", "edited"] { _ = try await tenancy.create(slug) }
            let registry = tenancy.registry

            // An orphan schema nobody owns.
            let orphan = try SQLIdentifier(prefix + "orphan")
            try await fixture.pool.database(schema: orphan).createSchemaIfNeeded()
            // A tenant whose schema was dropped behind the registry's back.
            let dropped = try #require(try await registry.tenant(slug: try TenantSlug("dropped")))
            try await fixture.pool.database(schema: try SQLIdentifier(dropped.schema)).dropSchema(cascade: true)
            // A registry level that disagrees with the schema.
            let stale = try #require(try await registry.tenant(slug: try TenantSlug("stale")))
            let store = try await registry.ready()
            let current = try #require(tenancy.currentLevel)
            try await store.recordLevel(id: stale.id, level: MigrationLevel(lastFile: current.lastFile, setChecksum: "old"), event: nil, detail: nil)
            // An applied file edited in one schema's tracking table.
            let edited = try #require(try await registry.tenant(slug: try TenantSlug("edited")))
            try await fixture.pool.database(schema: try SQLIdentifier(edited.schema)).execute(
                "UPDATE {{tables.schema_migrations}} SET checksum = 'tampered' WHERE filename = '001_accounts.sql'")
            // Two crashed provisionings: one committed its schema, one did not.
            let committed = try await store.insert(.new(slug: "committed", displayName: nil, schema: prefix + "committed", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
            try await fixture.commitSchema(committed.schema, like: tenancy)
            _ = try await store.insert(.new(slug: "vanished", displayName: nil, schema: prefix + "vanished", placement: "default", state: .provisioning), event: .provisioning, detail: nil)

            let report = try await tenancy.reconcile()
            let kinds = Dictionary(grouping: report.findings, by: \.kind).mapValues { $0.map { $0.slug ?? $0.schema }.sorted() }
            #expect(kinds[.orphanSchema] == [orphan.name])
            #expect(kinds[.missingSchema] == ["dropped"])
            #expect(kinds[.staleLevel] == ["stale"])
            #expect(kinds[.changedFile] == ["edited"])
            #expect(kinds[.stuckProvisioning] == ["committed", "vanished"])
            #expect(kinds[.behind] == nil)
            #expect(!report.isClean)
            #expect(report.findings.allSatisfy { !$0.fixed })

            let fixed = try await tenancy.reconcile(fix: true)
            let fixedKinds = Set(fixed.findings.filter(\.fixed).map(\.kind))
            #expect(fixedKinds == [.staleLevel, .stuckProvisioning])
            #expect(try await registry.tenant(slug: try TenantSlug("committed"))?.state == .active)
            #expect(try await registry.tenant(slug: try TenantSlug("vanished"))?.state == .failed)
            #expect(try await registry.tenant(slug: try TenantSlug("stale"))?.migrationLevel == tenancy.currentLevel)
            #expect(try await tenancy.database(for: "committed").tableExists("invoices"))
            // The orphan is reported, never dropped.
            #expect(try await admin.fetchValue("SELECT count(*) FROM pg_namespace WHERE nspname = $1", orphan.name, as: Int.self) == 1)

            // A new migration file: every healthy schema is behind.
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()
            let behind = try await released.reconcile().findings.filter { $0.kind == .behind }.compactMap(\.slug).sorted()
            #expect(behind == ["committed", "edited", "healthy", "stale"])
            try await fixture.pool.database(schema: orphan).dropSchema(cascade: true)
        }
    }
}
