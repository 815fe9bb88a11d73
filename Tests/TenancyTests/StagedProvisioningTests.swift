import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// A migration set with a file marked `-- pgdbm:no-transaction` cannot commit with its schema in
/// one transaction: tenants and spares are provisioned in stages, never served half-way, and
/// either complete or rolled back.
@Suite(integration, .timeLimit(.minutes(2)))
struct StagedProvisioningTests {
    static let concurrentIndex = """
        -- pgdbm:no-transaction
        CREATE INDEX CONCURRENTLY accounts_balance ON {{tables.accounts}} (balance);
        """

    func indexExists(_ schema: String, _ fixture: TenancyFixture) async throws -> Bool {
        try await fixture.pool.database(schema: nil).fetchValue(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'accounts_balance'", schema, as: Int.self) == 1
    }

    @Test(arguments: StoreKind.allCases)
    func tenantsAndSparesAreProvisionedWithEveryFile(store: StoreKind) async throws {
        try await TenancyFixture.run(store, ownDatabase: true) { fixture in
            try fixture.writeMigration("003_index.sql", Self.concurrentIndex)
            let tenancy = try fixture.makeTenancy()
            let report = try await tenancy.create("acme")
            #expect(report.outcome == .provisioned)
            #expect(report.appliedFiles == ["001_accounts.sql", "002_invoices.sql", "003_index.sql"])
            #expect(report.tenant.state == .active)
            #expect(report.tenant.migrationLevel == tenancy.currentLevel)
            #expect(try await indexExists(report.tenant.schema, fixture))
            #expect(try await tenancy.registry.events(for: try TenantSlug("acme")).map(\.kind) == [.provisioned, .provisioning])

            let spares = try await tenancy.fillSpares(count: 2, concurrency: 2)
            #expect(spares.count == 2 && spares.allSatisfy { $0.migrationLevel == tenancy.currentLevel })
            let claimed = try await tenancy.create("beta")
            #expect(claimed.outcome == .claimedSpare)
            #expect(try await indexExists(claimed.tenant.schema, fixture))
            #expect(try await tenancy.reconcile().isClean)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aFailingFileOutsideATransactionLeavesNoSchemaAndTheTenantCanBeRetried(store: StoreKind) async throws {
        try await TenancyFixture.run(store, ownDatabase: true) { fixture in
            try fixture.writeMigration("003_index.sql", "-- pgdbm:no-transaction\nCREATE INDEX CONCURRENTLY accounts_balance ON {{tables.missing}} (balance);")
            let broken = try fixture.makeTenancy()
            await #expect {
                try await broken.create("acme")
            } throws: { error in
                let error = error as? TenancyError
                return error?.code == .provisioningFailed && error?.description.contains("003_index.sql") == true
            }
            let tenant = try #require(try await broken.registry.tenant(slug: try TenantSlug("acme")))
            #expect(tenant.state == .failed)
            #expect(tenant.lastError?.contains("003_index.sql") == true)
            #expect(try await fixture.existingSchemas().isEmpty)
            await #expect { try await broken.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .provisioningFailed }

            await #expect { try await broken.fillSpares(count: 2) } throws: { ($0 as? TenancyError)?.code == .provisioningFailed }
            #expect(try await broken.registry.spares().isEmpty)
            #expect(try await fixture.existingSchemas().isEmpty)

            try fixture.writeMigration("003_index.sql", Self.concurrentIndex)
            let fixed = try fixture.makeTenancy()
            let retry = try await fixed.create("acme")
            #expect(retry.outcome == .provisioned)
            #expect(retry.tenant.schema == tenant.schema)
            #expect(try await indexExists(tenant.schema, fixture))
            let reconciled = try await fixed.reconcile()
            #expect(reconciled.isClean, "\(reconciled.findings)")
        }
    }

    /// While the last file runs, the tenant is not served, reconcile leaves it alone, and a
    /// second process creating the same slug waits for it and gets the one outcome.
    @Test(arguments: StoreKind.allCases)
    func aProvisioningInStagesIsNotServedNorTouchedUntilItCompletes(store: StoreKind) async throws {
        try await TenancyFixture.run(store, ownDatabase: true) { fixture in
            let gate = Int64.random(in: 1 ... .max)
            try fixture.writeMigration("003_index.sql", "-- pgdbm:no-transaction\nSELECT pg_advisory_xact_lock(\(gate));\n" + Self.concurrentIndex)
            let tenancy = try fixture.makeTenancy()
            let other = try fixture.makeTenancy()
            try await fixture.pool.database(schema: nil).withConnection { holder in
                _ = try await holder.fetchAll("SELECT pg_advisory_lock($1)", gate)
                let first = Task { try await tenancy.create("acme") }
                _ = try await eventually("the provisioning waits at its last file", timeout: .seconds(30)) {
                    try await holder.fetchValue("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::bigint & 4294967295)::oid", gate, as: Int.self) == 1
                }
                await #expect { try await other.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .provisioningInProgress }
                let reconciled = try await other.reconcile(fix: true)
                #expect(reconciled.findings.map(\.kind) == [.stuckProvisioning])
                #expect(reconciled.findings.first?.detail.contains("left alone") == true)
                #expect(reconciled.findings.first?.fixed == false)
                let second = Task { try await other.create("acme") }
                try await Task.sleep(for: .milliseconds(200))
                _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", gate)
                let (one, two) = (try await first.value, try await second.value)
                #expect(one.outcome == .provisioned && two.outcome == .alreadyActive)
                #expect(one.tenant.schema == two.tenant.schema)
            }
            #expect(try await fixture.existingSchemas().count == 1)
            #expect(try await tenancy.database(for: "acme").tableExists("invoices"))
        }
    }

    /// A fill killed half-way leaves spare rows `provisioning` beside an empty or partly
    /// migrated schema. Doctor names them; the next fill completes them, except one whose lock
    /// a live process holds.
    @Test(arguments: StoreKind.allCases)
    func sparesThatAKilledFillLeftHalfWayAreCompletedByTheNextFill(store: StoreKind) async throws {
        try await TenancyFixture.run(store, ownDatabase: true) { fixture in
            // A spare killed after two of three files: a complete spare of the older set, put back to provisioning.
            let older = try fixture.makeTenancy()
            let partly = try #require(try await older.fillSpares(count: 1).first)
            let store = older.registry.store
            let partlyRow = try #require(try await store.records(in: [.spare]).first)
            _ = try await store.update(partlyRow, TenantChange(state: .provisioning, event: .provisioning, detail: nil))
            // A spare killed right after its first stage: the row and an empty schema.
            let empty = older.lifecycle.makeSchemaName()
            _ = try await store.insert(.new(slug: nil, displayName: nil, schema: empty, placement: "default", state: .provisioning), event: .provisioning, detail: nil)
            try await fixture.pool.database(schema: nil).execute(try SQLTemplate("CREATE SCHEMA \(try SQLIdentifier(empty).quoted)"))
            // A spare whose fill is still running: its lock is held.
            let running = older.lifecycle.makeSchemaName()
            _ = try await store.insert(.new(slug: nil, displayName: nil, schema: running, placement: "default", state: .provisioning), event: .provisioning, detail: nil)

            try fixture.writeMigration("003_index.sql", Self.concurrentIndex)
            let tenancy = try fixture.makeTenancy()
            try await fixture.pool.database(schema: nil).withConnection { holder in
                #expect(try await Provisioner.lock(running, on: holder))
                let doctor = try await tenancy.reconcile()
                let partlyFinding = try #require(doctor.findings.first { $0.schema == partly.schema })
                #expect(partlyFinding.kind == .stuckProvisioning)
                #expect(partlyFinding.detail.contains("the next spares fill completes it"), "\(partlyFinding.detail)")

                let spares = try await tenancy.fillSpares(count: 1)
                #expect(Set(spares.map(\.schema)).isSuperset(of: [partly.schema, empty]))
                #expect(spares.count == 3)
                #expect(spares.allSatisfy { $0.migrationLevel == tenancy.currentLevel })
                #expect(try await indexExists(partly.schema, fixture))
                #expect(try await indexExists(empty, fixture))
                #expect(try await store.records(in: [.provisioning]).map(\.schema) == [running])
                try await Provisioner.unlock(running, on: holder)
            }
            // Its holder gone, the next fill completes that one too.
            let spares = try await tenancy.fillSpares(count: 0)
            #expect(spares.count == 4 && spares.contains { $0.schema == running })
            #expect(try await indexExists(running, fixture))
            let reconciled = try await tenancy.reconcile()
            #expect(reconciled.isClean, "\(reconciled.findings)")
        }
    }
}
