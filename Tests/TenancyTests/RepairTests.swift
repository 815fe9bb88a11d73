import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// Failures seen in the field: each test fails without the repair it names.
@Suite(integration, .timeLimit(.minutes(2)))
struct RepairTests {
    /// A `Tenancy` whose connections go through a proxy that can lose a COMMIT's answer. With
    /// `borrowing`, it borrows the pool's client, as an application's, and the test may run it.
    func withProxiedTenancy(_ fixture: TenancyFixture, borrowing: Bool = false, _ body: (Tenancy, FaultProxy) async throws -> Void) async throws {
        let direct = try fixture.pool.configuration ?? TestPostgres.makeTestConfiguration()
        let proxy = try await FaultProxy.start(upstreamHost: direct.host, upstreamPort: direct.port)
        var proxied = direct
        proxied.host = "127.0.0.1"
        proxied.port = proxy.port
        proxied.retry = .none
        do {
            try await DatabasePool.withPool(configuration: proxied, logger: TenancyFixture.silent) { pool in
                let tenancy = try fixture.makeTenancy(pool: borrowing ? DatabasePool(borrowing: pool.client, maximumConnections: 8, logger: TenancyFixture.silent) : pool)
                _ = try await tenancy.ready()
                try await body(tenancy, proxy)
            }
        } catch {
            try? await proxy.close()
            throw error
        }
        try await proxy.close()
    }

    @Test(arguments: StoreKind.allCases)
    func aProvisioningWhoseCommitAnswerWasLostIsAdoptedNotFailed(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await withProxiedTenancy(fixture) { tenancy, proxy in
                proxy.loseNextCommitReply(after: "CREATE SCHEMA")
                let report = try await tenancy.create("acme")
                #expect(proxy.commitRepliesLost == 1)
                #expect(report.tenant.state == .active)
                #expect([.adopted, .provisioned].contains(report.outcome))
                #expect(try await fixture.existingSchemas() == [report.tenant.schema])
                #expect(try await tenancy.database(for: "acme").tableExists("invoices"))
                #expect(try await tenancy.create("acme").outcome == .alreadyActive)
                #expect(try await tenancy.reconcile().isClean)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSpareWhoseCommitAnswerWasLostIsKept(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await withProxiedTenancy(fixture) { tenancy, proxy in
                proxy.loseNextCommitReply(after: "CREATE SCHEMA")
                let spares = try await tenancy.fillSpares(count: 1)
                #expect(proxy.commitRepliesLost == 1)
                #expect(spares.count == 1)
                #expect(try await fixture.existingSchemas() == spares.map(\.schema))
                #expect(try await tenancy.reconcile().isClean)
            }
        }
    }

    /// The server goes away in the middle of a fleet run (every connection cut, new ones
    /// refused, as in a restart): the run ends within seconds, nothing hangs, and a resume
    /// finishes it once the server is back.
    @Test(arguments: StoreKind.allCases)
    func aFleetRunThatLosesTheServerEndsAndResumesWhenItIsBack(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let setup = try fixture.makeTenancy()
            for slug in ["t1", "t2", "t3", "t4"] { try await setup.create(slug) }
            let gate = Int64.random(in: 1 ... .max)
            try fixture.writeMigration("003_gated.sql", "SELECT pg_advisory_xact_lock(\(gate));")
            try await withProxiedTenancy(fixture) { tenancy, proxy in
                let runID = try await fixture.pool.database(schema: nil).withConnection { holder in
                    _ = try await holder.fetchAll("SELECT pg_advisory_lock($1)", gate)
                    let running = Task { try await tenancy.fleet.run(.all, options: { var options = FleetMigrator.Options(); options.concurrency = 1; return options }()) }
                    _ = try await eventually("the first tenant waits at the gate") {
                        try await holder.fetchValue("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::bigint & 4294967295)::oid", gate, as: Int.self) == 1
                    }
                    proxy.cutAllConnections()
                    _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", gate)
                    let started = ContinuousClock.now
                    let result = await running.result
                    #expect(ContinuousClock.now - started < .seconds(30))
                    switch (store, result) {
                    case (.sqlite, .success(let report)):
                        // The ledger is elsewhere: the tenant in flight failed, the others wait.
                        #expect(report.run.status == .interrupted)
                        #expect(report.items.map(\.status) == [.failed, .pending, .pending, .pending])
                        return report.run.id
                    case (.postgres, .failure(let error)):
                        // The ledger went away with the server: the run says which one to resume.
                        let error = try #require(error as? TenancyError)
                        #expect(error.code == .fleetRunInterrupted)
                        #expect(error.description.contains("--resume"))
                        return try #require(try await fixture.makeTenancy().registry.fleetRuns().first?.id)
                    default:
                        Issue.record("unexpected outcome \(result)")
                        return -1
                    }
                }
                proxy.acceptConnections()
                let resumed = try await tenancy.fleet.resume(runID: runID)
                #expect(resumed.run.status == .completed)
                #expect(resumed.items.allSatisfy { $0.status == .succeeded })
            }
        }
    }

    /// A registry write whose answer was lost (rename, suspend, the first step of a drop)
    /// committed: the caller gets the changed tenant, not an error, and nothing is applied twice.
    @Test func registryChangesWhoseAnswerWasLostAreReadBack() async throws {
        try await TenancyFixture.run(.postgres) { fixture in
            try await withProxiedTenancy(fixture) { tenancy, proxy in
                let acme = try await tenancy.create("acme").tenant
                proxy.loseNextReply(toStatementContaining: "WITH moved AS")
                let renamed = try await tenancy.rename("acme", to: "acme-2")
                #expect(proxy.commitRepliesLost == 1)
                #expect(renamed.slug.rawValue == "acme-2" && renamed.schema == acme.schema)
                proxy.loseNextReply(toStatementContaining: "WITH moved AS")
                let suspended = try await tenancy.suspend("acme-2")
                #expect(proxy.commitRepliesLost == 2)
                #expect(suspended.state == .suspended)
                let events = try await tenancy.registry.events(for: try TenantSlug("acme-2")).map(\.kind)
                #expect(events.filter { $0 == .renamed }.count == 1 && events.filter { $0 == .suspended }.count == 1)
            }
        }
    }

    /// A move whose registry answers were lost (the mark, then the switch) committed both:
    /// the mover reads them back and reports the move once, and the tenant is served from its
    /// new placement.
    @Test func aMoveWhoseRegistryAnswersWereLostIsReadBack() async throws {
        try await PlacementTests.withPlacements(.postgres, count: 1) { fixture, databases in
            try await withProxiedTenancy(fixture, borrowing: true) { tenancy, proxy in
                try await PlacementTests.running(tenancy) {
                    _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                    _ = try await tenancy.create("acme", placement: "default")
                    try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test")
                    proxy.loseNextReply(toStatementContaining: "WITH moved AS")
                    await #expect(throws: MoveStopped.self) {
                        try await tenancy.lifecycle.move(TenantSlug("acme"), to: "eu-2", mode: .offline, stoppingAfter: .markedMoving)
                    }
                    #expect(proxy.commitRepliesLost == 1)
                    #expect(try await tenancy.tenant("acme")?.state == .moving)
                    proxy.loseNextReply(toStatementContaining: "WITH moved AS")
                    let report = try await tenancy.resumeMove("acme")
                    #expect(proxy.commitRepliesLost == 2)
                    #expect(report.outcome == .moved && report.tenant.placement == "eu-2" && report.tenant.state == .active)
                    let events = try await tenancy.registry.events(for: TenantSlug("acme")).map(\.kind)
                    #expect(events.filter { $0 == .moved }.count == 1 && events.filter { $0 == .moveStarted }.count == 1)
                    #expect(try await tenancy.database(for: "acme").fetchAll("SELECT email FROM {{tables.accounts}}", as: String.self) == ["a@acme.test"])
                }
            }
        }
    }

    /// After a lost `COMMIT` answer, what committed is read only once the transaction that
    /// sent it has ended: the read waits while that transaction holds the provisioning lock,
    /// and gives up after its bound.
    @Test func aSettlingReadWaitsForTheProvisioningTransactionToEnd() async throws {
        try await TenancyFixture.run(.sqlite) { fixture in
            let tenancy = try fixture.makeTenancy()
            let provisioner = Provisioner(pool: fixture.pool, migrations: try tenancy.lifecycle.requireMigrations())
            let schema = fixture.schemaPrefix + "in_flight"
            let waited = try await fixture.pool.database(schema: nil).withTransaction { tx in
                #expect(try await Provisioner.lock(schema, in: tx))
                await #expect { try await provisioner.waitForProvisioning(of: schema, timeout: .milliseconds(200)) } throws: {
                    ($0 as? SchemaDBError)?.sqlState == "55P03"
                }
                let waiting = Task {
                    let start = ContinuousClock.now
                    try await provisioner.waitForProvisioning(of: schema)
                    return ContinuousClock.now - start
                }
                try await Task.sleep(for: .milliseconds(500))
                return waiting
            }
            #expect(try await waited.value >= .milliseconds(400))
        }
    }

    /// Settling a write whose answer was lost: one that has not run yet is fenced off (it can
    /// no longer apply), and one that committed is read back, not fenced.
    @Test func settlingAWriteInDoubtFencesItOffOrReadsItBack() async throws {
        try await TenancyFixture.run(.postgres) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await tenancy.create("acme")
            let store = try await tenancy.registry.ready()
            let row = try #require(try await store.record(slug: "acme"))
            let settled = try await store.settledRecord(after: row)
            #expect(settled.fenced)
            #expect(settled.row?.generation == row.generation + 1 && settled.row?.state == .active && settled.row?.slug == "acme")
            await #expect { try await store.update(row, TenantChange(state: .suspended, event: .suspended, detail: nil)) } throws: {
                ($0 as? TenancyError)?.code == .concurrentChange
            }
            let current = try #require(settled.row)
            let suspended = try await store.update(current, TenantChange(state: .suspended, event: .suspended, detail: nil))
            let committed = try await store.settledRecord(after: current)
            #expect(!committed.fenced && committed.row?.generation == suspended.generation && committed.row?.state == .suspended)
        }
    }

    /// The server goes away while a provisioning in stages runs its file outside a
    /// transaction: the tenant is never served half-way, and creating it again once the
    /// server is back completes the schema it left.
    @Test(arguments: StoreKind.allCases)
    func aProvisioningInStagesCutOffByTheServerIsCompletedByTheNextAttempt(store: StoreKind) async throws {
        try await TenancyFixture.run(store, ownDatabase: true) { fixture in
            let gate = Int64.random(in: 1 ... .max)
            try fixture.writeMigration("003_index.sql", "-- pgdbm:no-transaction\nSELECT pg_advisory_xact_lock(\(gate));\nCREATE INDEX CONCURRENTLY accounts_balance ON {{tables.accounts}} (balance);")
            try await withProxiedTenancy(fixture) { tenancy, proxy in
                try await fixture.pool.database(schema: nil).withConnection { holder in
                    _ = try await holder.fetchAll("SELECT pg_advisory_lock($1)", gate)
                    let running = Task { try await tenancy.create("acme") }
                    _ = try await eventually("the provisioning waits at its last file", timeout: .seconds(30)) {
                        try await holder.fetchValue("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::bigint & 4294967295)::oid", gate, as: Int.self) == 1
                    }
                    proxy.cutAllConnections()
                    await #expect { try await running.value } throws: { error in
                        let error = error as? TenancyError
                        return error?.code == .databaseFailed && error?.description.contains("running the same command again") == true
                    }
                    _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", gate)
                }
                let left = try #require(try await fixture.record("acme"))
                #expect(left.state == .provisioning)
                await #expect { try await fixture.makeTenancy().database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .provisioningInProgress }
                proxy.acceptConnections()
                let finished = try await tenancy.create("acme")
                #expect(finished.outcome == .adopted)
                #expect(finished.tenant.schema == left.schema)
                #expect(finished.appliedFiles == ["003_index.sql"])
                #expect(try await tenancy.reconcile().isClean)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aFailedTenantWhoseSchemaIsCompleteIsAdoptedByRetryAndByReconcile(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let registry = try await tenancy.registry.ready()
            // What a lost answer left before the repair: a complete schema beside a failed row.
            for slug in ["acme", "globex"] {
                var row = TenantRecord.new(slug: slug, displayName: nil, schema: fixture.schemaPrefix + slug, placement: "default", state: .failed)
                row.lastError = "connection closed"
                _ = try await registry.insert(row, event: .failed, detail: nil)
                try await fixture.commitSchema(row.schema, like: tenancy)
            }
            let retried = try await tenancy.create("acme")
            #expect(retried.outcome == .adopted && retried.tenant.state == .active && retried.tenant.lastError == nil)

            let report = try await tenancy.reconcile(fix: true)
            #expect(report.findings.map(\.kind) == [.failedWithSchema])
            #expect(report.isClean)
            #expect(try await tenancy.tenant("globex")?.state == .active)
            #expect(try await tenancy.database(for: "globex").tableExists("invoices"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func reconcileLeavesARunningProvisioningAlone(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try fixture.writeMigration("003_slow.sql", "SELECT pg_sleep(1.5);")
            let creator = try fixture.makeTenancy()
            let doctor = try fixture.makeTenancy()
            _ = try await doctor.ready()
            async let created = creator.create("acme")
            // Let the provisioning get into its transaction, then repair around it.
            try await Task.sleep(for: .milliseconds(500))
            let report = try await doctor.reconcile(fix: true)
            #expect(report.findings.filter(\.fixed).isEmpty)
            let outcome = try await created
            #expect(outcome.outcome == .provisioned && outcome.tenant.state == .active)
            #expect(try await doctor.reconcile().isClean)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func reconcileNeverLowersALevelANewerReleaseRecorded(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let newer = try fixture.makeTenancy()
            try await newer.create("acme")
            let level = try #require(newer.currentLevel)
            try FileManager.default.removeItem(at: fixture.migrationsURL.appendingPathComponent("003_notes.sql"))
            let older = try fixture.makeTenancy()

            let report = try await older.reconcile(fix: true)
            #expect(report.findings.map(\.kind) == [.unknownFiles])
            #expect(report.findings.first?.detail.contains("003_notes.sql") == true)
            #expect(try await older.tenant("acme")?.migrationLevel == level)
        }
    }

    /// An older release checked a schema just before a newer one migrated it further and
    /// recorded its level; the older one's level, recorded after, is not written over it.
    @Test(arguments: StoreKind.allCases)
    func anOlderReleaseNeverRecordsItsLevelOverANewerOne(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let older = try fixture.makeTenancy()
            try await older.create("acme")
            let olderLevel = try #require(older.currentLevel)
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let newer = try fixture.makeTenancy()
            let run = try await newer.fleet.run(.all)
            let newerLevel = try #require(newer.currentLevel)
            let id = try await older.lifecycle.record(TenantSlug("acme")).id

            #expect(try await older.registry.store.recordLevel(id: id, level: olderLevel, event: .migrated, detail: "late") == false)
            #expect(try await newer.tenant("acme")?.migrationLevel == newerLevel)
            // Nor by a fleet run's item, the other path that records levels.
            try await older.registry.store.finishFleetItem(
                runID: run.run.id, tenantID: id, status: .skipped, error: nil, durationMilliseconds: 1, filesApplied: [], level: olderLevel)
            #expect(try await newer.tenant("acme")?.migrationLevel == newerLevel)
            #expect(try await newer.registry.events(for: TenantSlug("acme")).filter { $0.kind == .migrated }.count == 1)
            // The same last file of a changed set, or a later file, is written.
            let changedSet = MigrationLevel(lastFile: newerLevel.lastFile, setChecksum: "changed")
            #expect(try await newer.registry.store.recordLevel(id: id, level: changedSet, event: nil, detail: nil))
            #expect(try await newer.tenant("acme")?.migrationLevel == changedSet)
            // Versions order by number: 10_ comes after 9_.
            #expect(MigrationLevel(lastFile: "9_notes.sql", setChecksum: "").precedes(file: "10_tags.sql"))
            #expect(!MigrationLevel(lastFile: "10_tags.sql", setChecksum: "").precedes(file: "9_notes.sql"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func reconcileDiscardsASpareWithoutSchemaThatTookPartInAFleetRun(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let spare = try #require(try await tenancy.fillSpares(count: 1).first)
            let run = try await tenancy.migrateAllTenants()
            try await fixture.pool.database(schema: try SQLIdentifier(spare.schema)).dropSchema(cascade: true)

            let report = try await tenancy.reconcile(fix: true)
            #expect(report.findings.map(\.kind) == [.missingSchema])
            #expect(report.isClean)
            #expect(try await tenancy.registry.spares().isEmpty)
            #expect(try await tenancy.registry.fleetRunItems(runID: run.run.id).map(\.schema) == [spare.schema])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTenancyRefusesARegistryOfAnotherPrefixModuleOrDatabaseAndChangesNothing(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await tenancy.fillSpares(count: 2)
            let otherPrefix = try fixture.makeTenancy { $0.schemaPrefix = "other_" }
            await #expect { try await otherPrefix.reconcile(fix: true) } throws: { error in
                (error as? TenancyError)?.code == .registryMismatch && "\(error)".contains(fixture.schemaPrefix)
            }
            let otherModule = try fixture.makeTenancy { $0.migrationModule = "audit" }
            await #expect { try await otherModule.fleet.run(.all) } throws: { error in
                (error as? TenancyError)?.code == .registryMismatch && "\(error)".contains("audit")
            }
            try await TestPostgres.withTemporaryDatabase(pool: fixture.pool) { config in
                try await TestPostgres.withPool(configuration: config) { otherDatabase in
                    // A PostgreSQL registry lives in its database: reach the same registry from the other one.
                    let sameRegistry = try TestPostgres.makeTestConfiguration()
                    let borrowed = DatabasePool(borrowing: otherDatabase.client, maximumConnections: 8, logger: TenancyFixture.silent)
                    let elsewhere = try fixture.makeTenancy(pool: borrowed) {
                        if store == .postgres { $0.registry = .postgres(sameRegistry, schema: fixture.registrySchema) }
                    }
                    // A registry in another database has a pool of its own, which runs with the Tenancy.
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask { await elsewhere.run() }
                        defer { group.cancelAll() }
                        await #expect { try await elsewhere.reconcile(fix: true) } throws: { error in
                            (error as? TenancyError)?.code == .registryMismatch && "\(error)".contains(config.effectiveDatabase)
                        }
                    }
                }
            }
            #expect(try await tenancy.registry.spares().count == 2)
            #expect(try await fixture.existingSchemas().count == 2)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDropThatCannotGetItsLocksPutsTheTenantBackAsItWas(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy { $0.lockTimeout = .milliseconds(300) }
            let acme = try await tenancy.create("acme").tenant
            try await tenancy.database(for: "acme").withTransaction { busy in
                _ = try await busy.fetchAll("SELECT * FROM {{tables.accounts}}")
                await #expect { try await tenancy.delete("acme", confirmingDataLoss: true) } throws: { error in
                    (error as? TenancyError)?.code == .databaseFailed && "\(error)".contains("active again")
                }
            }
            let after = try #require(try await tenancy.tenant("acme"))
            #expect(after.state == .active && after.lastError != nil)
            #expect(try await tenancy.registry.events(for: after.slug).map(\.kind).prefix(2) == [.deleteRolledBack, .deleting])
            #expect(try await tenancy.database(for: "acme").tableExists("accounts"))
            #expect(try await fixture.existingSchemas() == [acme.schema])

            #expect(try await tenancy.delete("acme", confirmingDataLoss: true).state == .deleted)
            #expect(try await fixture.existingSchemas().isEmpty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDropLeftHalfWayIsNeverServedAndIsFinishedByDropOrReconcile(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            let registry = try await tenancy.registry.ready()
            // What a process killed between marking and dropping leaves: `deleting`, schema still there.
            for slug in ["acme", "globex"] {
                let record = try #require(try await registry.record(slug: try await tenancy.create(slug).tenant.slug.rawValue))
                _ = try await registry.update(record, TenantChange(state: .deleting, event: .deleting, detail: "from active"))
            }
            await #expect { try await tenancy.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .tenantDeleted }
            let globex = try #require(try await registry.record(slug: "globex"))
            try await fixture.pool.database(schema: try SQLIdentifier(globex.schema)).dropSchema(cascade: true)

            let report = try await tenancy.reconcile(fix: true)
            #expect(report.findings.map(\.kind) == [.unfinishedDeletion, .unfinishedDeletion])
            #expect(report.findings.filter(\.fixed).map(\.slug) == ["globex"])
            #expect(try await tenancy.tenant("globex")?.state == .deleted)
            #expect(try await tenancy.tenant("acme")?.state == .deleting)

            #expect(try await tenancy.delete("acme", confirmingDataLoss: true).state == .deleted)
            #expect(try await fixture.existingSchemas().isEmpty)
            #expect(try await tenancy.reconcile().isClean)
        }
    }
}
