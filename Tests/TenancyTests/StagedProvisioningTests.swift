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
}
