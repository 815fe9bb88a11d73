import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

@Suite(integration, .timeLimit(.minutes(2)))
struct ProvisionerTests {
    @Test(arguments: StoreKind.allCases)
    func provisioningCreatesAMigratedSchemaAndRecordsItsLevel(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let report = try await tenancy.create("acme", displayName: "Acme Inc")
            #expect(report.outcome == .provisioned)
            #expect(report.appliedFiles == ["001_accounts.sql", "002_invoices.sql"])
            #expect(report.tenant.state == .active)
            #expect(report.tenant.schema.hasPrefix(fixture.schemaPrefix))
            #expect(report.tenant.migrationLevel == tenancy.currentLevel)
            let db = try await tenancy.database(for: "acme")
            #expect(db.schema?.name == report.tenant.schema)
            #expect(try await db.tableExists("invoices"))
            #expect(try await tenancy.registry.events(for: try TenantSlug("acme")).map(\.kind) == [.provisioned, .provisioning])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func provisioningAnActiveTenantAgainIsANoOp(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let first = try await tenancy.create("acme")
            let second = try await tenancy.create("acme")
            #expect(second.outcome == .alreadyActive)
            #expect(second.tenant.schema == first.tenant.schema)
            #expect(second.appliedFiles.isEmpty)
            #expect(try await fixture.existingSchemas() == [first.tenant.schema])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aBrokenMigrationLeavesNoSchemaAndAFailedRowThatCanBeRetried(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try fixture.writeMigration("003_broken.sql", "CREATE TABLE {{tables.ok}} (id int);\nALTER TABLE {{tables.missing}} ADD COLUMN x int;")
            let broken = try fixture.makeTenancy()
            await #expect {
                try await broken.create("acme")
            } throws: { error in
                let error = error as? TenancyError
                return error?.code == .provisioningFailed && error?.description.contains("003_broken.sql") == true
            }
            let tenant = try #require(try await broken.registry.tenant(slug: try TenantSlug("acme")))
            #expect(tenant.state == .failed)
            #expect(tenant.lastError?.contains("003_broken.sql") == true)
            #expect(try await fixture.existingSchemas().isEmpty)
            await #expect { try await broken.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .provisioningFailed }

            try fixture.writeMigration("003_broken.sql", "CREATE TABLE {{tables.ok}} (id int);")
            let fixed = try fixture.makeTenancy()
            let retry = try await fixed.create("acme")
            #expect(retry.outcome == .provisioned)
            #expect(retry.tenant.schema == tenant.schema)
            #expect(try await fixed.database(for: "acme").tableExists("ok"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSchemaCommittedBeforeACrashIsAdopted(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let slug = try TenantSlug("acme")
            // The crash: the schema committed, the registry never heard of it.
            let store = try await tenancy.registry.ready()
            let row = try await store.insert(.new(slug: "acme", displayName: nil, schema: fixture.schemaPrefix + "crashed", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
            try await fixture.commitSchema(row.schema, like: tenancy)
            #expect(try await tenancy.registry.tenant(slug: slug)?.state == .provisioning)

            let report = try await tenancy.create("acme")
            #expect(report.outcome == .adopted)
            #expect(report.appliedFiles.isEmpty)
            #expect(report.tenant.state == .active)
            #expect(report.tenant.schema == row.schema)
            #expect(report.tenant.migrationLevel == tenancy.currentLevel)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func twoProvisionersOfOneSlugCreateOneSchemaAndBothSucceed(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            // Two Tenancy instances with their own registry connections, as two processes would have.
            let (first, second) = (try fixture.makeTenancy(), try fixture.makeTenancy())
            let results = await withTaskGroup(of: Result<OnboardingReport, any Error>.self) { group in
                for tenancy in [first, second] {
                    group.addTask {
                        do { return .success(try await tenancy.create("acme")) } catch { return .failure(error) }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            // The second caller waits for the first and reports the tenant it finds.
            let outcomes = try results.map { try $0.get().outcome }
            #expect(outcomes.filter { $0 == .provisioned }.count == 1)
            #expect(outcomes.allSatisfy { [.provisioned, .alreadyActive, .adopted].contains($0) })
            #expect(try await fixture.existingSchemas().count == 1)
            #expect(try await first.registry.tenant(slug: try TenantSlug("acme"))?.state == .active)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func manySlugsProvisionConcurrently(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let slugs = (1...8).map { "tenant-\($0)" }
            let outcomes = try await withThrowingTaskGroup(of: OnboardingReport.Outcome.self) { group in
                for slug in slugs { group.addTask { try await tenancy.create(slug).outcome } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes == Array(repeating: .provisioned, count: 8))
            #expect(try await fixture.existingSchemas().count == 8)
            #expect(try await tenancy.registry.countByState() == [.active: 8])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func sparesAreClaimedWithoutDDLAndMigratedFirstWhenBehind(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let spares = try await tenancy.fillSpares(count: 3, concurrency: 2)
            #expect(spares.count == 3)
            #expect(spares.allSatisfy { $0.migrationLevel == tenancy.currentLevel })
            let claimed = try await tenancy.create("acme")
            #expect(claimed.outcome == .claimedSpare)
            #expect(claimed.tenant.schema == spares[0].schema)
            #expect(try await tenancy.database(for: "acme").tableExists("invoices"))
            #expect(try await tenancy.registry.spares().count == 2)
            #expect(try await fixture.existingSchemas().count == 3)
            // Topping up replaces the claimed spare.
            #expect(try await tenancy.fillSpares(count: 1).count == 3)

            // A release adds a file: the next spare is migrated before it is handed out.
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()
            let next = try await released.create("globex")
            #expect(next.outcome == .claimedSpare)
            #expect(next.tenant.migrationLevel?.lastFile == "003_notes.sql")
            #expect(try await released.database(for: "globex").tableExists("notes"))
        }
    }

    /// A spare whose schema was dropped behind the registry's back is never handed to a
    /// tenant: the next spare is claimed instead.
    @Test(arguments: StoreKind.allCases)
    func aSpareWhoseSchemaIsGoneIsNeverClaimed(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let spares = try await tenancy.fillSpares(count: 2, concurrency: 1).sorted { $0.schema < $1.schema }
            let gone = spares[0].schema
            try await fixture.pool.database(schema: try SQLIdentifier(gone)).dropSchema(cascade: true)
            for slug in ["acme", "beta"] {
                let report = try await tenancy.create(slug)
                #expect(report.tenant.schema != gone)
                #expect(try await tenancy.database(for: slug).tableExists("invoices"))
            }
            #expect(try await tenancy.reconcile(fix: true).isClean)
            #expect(try await tenancy.registry.spares().isEmpty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func lifecycleChangesAreSeenByTheDirectoryAtOnce(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let created = try await tenancy.create("acme")
            _ = try await tenancy.database(for: "acme")
            try await tenancy.suspend("acme")
            await #expect { try await tenancy.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .tenantSuspended }
            try await tenancy.resume("acme")
            #expect(try await tenancy.database(for: "acme").schema?.name == created.tenant.schema)

            try await tenancy.rename("acme", to: "acme-inc")
            await #expect { try await tenancy.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .tenantNotFound }
            #expect(try await tenancy.database(for: "acme-inc").schema?.name == created.tenant.schema)

            await #expect { try await tenancy.delete("acme-inc", confirmingDataLoss: false) } throws: {
                ($0 as? TenancyError)?.code == .confirmationRequired
            }
            #expect(try await fixture.existingSchemas().count == 1)
            let deleted = try await tenancy.delete("acme-inc", confirmingDataLoss: true)
            #expect(deleted.state == .deleted)
            #expect(try await fixture.existingSchemas().isEmpty)
            await #expect { try await tenancy.database(for: "acme-inc") } throws: { ($0 as? TenancyError)?.code == .tenantDeleted }
            await #expect { try await tenancy.create("acme-inc") } throws: { ($0 as? TenancyError)?.code == .tenantDeleted }
        }
    }

    @Test(arguments: ["Acme", "acme'; DROP SCHEMA public CASCADE; --", "ténant", String(repeating: "a", count: 51), "public", "pg-x", ""])
    func hostileSlugsAreRefusedBeforeAnythingIsWritten(slug: String) async throws {
        try await TenancyFixture.run { fixture in
            let tenancy = try fixture.makeTenancy()
            await #expect { try await tenancy.create(slug) } throws: { ($0 as? TenancyError)?.code == .invalidSlug }
            await #expect { try await tenancy.database(for: slug) } throws: { ($0 as? TenancyError)?.code == .invalidSlug }
            #expect(try await tenancy.registry.countByState().isEmpty)
            #expect(try await fixture.existingSchemas().isEmpty)
        }
    }
}
