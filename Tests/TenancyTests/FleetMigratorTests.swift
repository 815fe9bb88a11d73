import Foundation
import SchemaDB
import SchemaDBTesting
import Synchronization
import Testing
@testable import Tenancy

@Suite(integration, .timeLimit(.minutes(2)))
struct FleetMigratorTests {
    /// A release that fails on tenants holding an account with a negative balance.
    static let positiveBalances = "ALTER TABLE {{tables.accounts}} ADD CONSTRAINT balance_positive CHECK (balance >= 0);"

    func onboard(_ tenancy: Tenancy, _ slugs: [String], negative: Set<String> = []) async throws {
        for slug in slugs {
            try await tenancy.create(slug)
            let db = try await tenancy.database(for: slug)
            try await db.execute("INSERT INTO {{tables.accounts}} (email, balance) VALUES ($1, $2)", "owner@\(slug).test", negative.contains(slug) ? -5 : 10)
        }
    }

    func hasConstraint(_ tenancy: Tenancy, _ slug: String) async throws -> Bool {
        let db = try await tenancy.database(for: slug)
        return try await db.fetchValue("SELECT count(*) FROM pg_constraint WHERE conname = 'balance_positive' AND connamespace = $1::regnamespace", db.schema!.name, as: Int.self) == 1
    }

    @Test(arguments: StoreKind.allCases)
    func migratingAllTenantsBringsTenantsSuspendedOnesAndSparesToTheNewLevel(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["a1", "b2", "c3"])
            try await tenancy.suspend("c3")
            _ = try await tenancy.fillSpares(count: 1)
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()

            let report = try await released.migrateAllTenants(concurrency: 2)
            #expect(report.run.status == .completed)
            #expect(report.run.counts.total == 4 && report.run.counts.succeeded == 4)
            #expect(report.items.map(\.slug) == ["a1", "b2", "c3", nil])
            #expect(report.items.allSatisfy { $0.filesApplied == ["003_notes.sql"] && $0.attempts == 1 })
            #expect(report.run.target == released.currentLevel)
            for tenant in try await released.registry.tenants() {
                #expect(tenant.migrationLevel == released.currentLevel)
            }
            #expect(try await released.registry.spares().allSatisfy { $0.migrationLevel == released.currentLevel })
            #expect(try await released.registry.events(for: try TenantSlug("a1")).first?.kind == .migrated)

            let again = try await released.migrateAllTenants()
            #expect(again.run.counts.skipped == 4)
            #expect(try await released.registry.fleetRuns().map(\.id) == [again.run.id, report.run.id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func thePlanListsPendingFilesAndProblemsWithoutChangingAnything(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["a1", "b2"])
            let b2 = try await tenancy.database(for: "b2")
            try await b2.execute("UPDATE {{tables.schema_migrations}} SET checksum = 'edited' WHERE filename = '001_accounts.sql'")
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()

            let plan = try await released.fleet.plan(.all)
            #expect(plan.entries.map(\.slug) == ["a1", "b2"])
            #expect(plan.entries.map(\.pending) == [["003_notes.sql"], ["003_notes.sql"]])
            #expect(plan.blocked.map(\.slug) == ["b2"])
            #expect(plan.blocked.first?.problem?.contains("001_accounts.sql") == true)
            #expect(try await tenancy.database(for: "a1").tableExists("notes") == false)
            #expect(try await released.registry.fleetRuns().isEmpty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func failedTenantsAreRolledBackTheRunGoesOnAndResumeRetriesOnlyThem(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3", "t4", "t5"], negative: ["t2", "t4"])
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            let released = try fixture.makeTenancy()
            let seen = Mutex<[FleetProgress]>([])

            let report = try await released.fleet.run(.all, progress: { progress in seen.withLock { $0.append(progress) } })
            #expect(report.run.status == .completedWithFailures)
            #expect(report.run.counts.succeeded == 3 && report.run.counts.failed == 2)
            #expect(report.failures.map(\.slug) == ["t2", "t4"])
            #expect(report.failures.allSatisfy { $0.error?.contains("003_positive.sql") == true && $0.error?.contains("balance_positive") == true })
            #expect(seen.withLock { $0.count } == 5)
            #expect(seen.withLock { $0.map(\.finished).max() } == 5)
            for slug in ["t2", "t4"] {
                #expect(try await hasConstraint(tenancy, slug) == false)
                #expect(try await released.registry.tenant(slug: try TenantSlug(slug))?.migrationLevel == tenancy.currentLevel)
            }
            #expect(try await hasConstraint(tenancy, "t1"))

            for slug in ["t2", "t4"] {
                try await tenancy.database(for: slug).execute("UPDATE {{tables.accounts}} SET balance = 0")
            }
            let resumed = try await released.fleet.resume(runID: report.run.id)
            #expect(resumed.run.id == report.run.id)
            #expect(resumed.run.status == .completed)
            #expect(resumed.run.counts.succeeded == 5)
            #expect(resumed.items.map(\.attempts) == [1, 2, 1, 2, 1])
            #expect(try await hasConstraint(tenancy, "t4"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func exceedingMaxFailuresAbortsAndLeavesTheRestPending(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3", "t4"], negative: ["t1", "t2"])
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            var options = FleetMigrator.Options()
            options.concurrency = 1
            options.maxFailures = 1
            let report = try await fixture.makeTenancy().fleet.run(.all, options: options)
            #expect(report.run.status == .aborted)
            #expect(report.run.error?.contains("more than 1") == true)
            #expect(report.items.map(\.status) == [.failed, .failed, .pending, .pending])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aFailingCanaryAbortsBeforeAnyOtherTenantIsTouched(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3", "t4"], negative: ["t1"])
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            var options = FleetMigrator.Options()
            options.canary = 2
            let report = try await fixture.makeTenancy().fleet.run(.all, options: options)
            #expect(report.run.status == .aborted)
            #expect(report.run.error?.contains("canary") == true)
            #expect(report.items.map(\.status) == [.failed, .pending, .pending, .pending])
            #expect(try await hasConstraint(tenancy, "t2") == false)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSecondRunFailsFastWhileTheFleetLockIsHeldOrWaitsWhenAsked(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1"])
            let key = try tenancy.lifecycle.requireMigrations().fleetLockKey(schemaPrefix: fixture.schemaPrefix)
            try await fixture.pool.database(schema: nil).withConnection { holder in
                #expect(try await holder.fetchValue("SELECT pg_try_advisory_lock($1)", key, as: Bool.self) == true)
                await #expect { try await tenancy.fleet.run(.all) } throws: { ($0 as? TenancyError)?.code == .fleetLocked }
                var patient = FleetMigrator.Options()
                patient.fleetLockWait = .milliseconds(300)
                await #expect { try await tenancy.fleet.run(.all, options: patient) } throws: { ($0 as? TenancyError)?.code == .fleetLocked }
                #expect(try await tenancy.registry.fleetRuns().isEmpty)

                patient.fleetLockWait = .seconds(30)
                async let waiting = tenancy.fleet.run(.all, options: patient)
                try await Task.sleep(for: .milliseconds(200))
                _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", key)
                #expect(try await waiting.run.status == .completed)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func stoppingFinishesTheTenantInFlightAndResumeCompletesTheRest(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3"])
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()
            let stop = FleetStop()
            var options = FleetMigrator.Options()
            options.concurrency = 1
            let report = try await released.fleet.run(.all, options: options, stop: stop, progress: { _ in stop.stop(reason: "SIGINT") })
            #expect(report.run.status == .interrupted)
            #expect(report.run.error == "SIGINT")
            #expect(report.items.map(\.status) == [.succeeded, .pending, .pending])

            let resumed = try await released.fleet.resume(runID: report.run.id)
            #expect(resumed.run.status == .completed)
            #expect(resumed.items.map(\.status) == [.succeeded, .succeeded, .succeeded])
            #expect(resumed.items.map(\.attempts) == [1, 1, 1])
        }
    }

    /// The fleet lock's backend terminated under a running run: the run notices, stops between
    /// tenants and is left interrupted, so a second run cannot overlap it unnoticed.
    @Test(arguments: StoreKind.allCases)
    func aRunWhoseFleetLockWasLostStopsAndIsResumable(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3"])
            // The first tenant's migration waits for a lock the test holds.
            let gate = Int64.random(in: 1 ... .max)
            try fixture.writeMigration("003_gated.sql", "SELECT pg_advisory_xact_lock(\(gate));")
            let released = try fixture.makeTenancy()
            let key = try #require(released.lifecycle.migrations).fleetLockKey(schemaPrefix: fixture.schemaPrefix)
            let stop = FleetStop()
            try await fixture.pool.database(schema: nil).withConnection { holder in
                _ = try await holder.fetchAll("SELECT pg_advisory_lock($1)", gate)
                async let running = released.fleet.run(.all, options: { var options = FleetMigrator.Options(); options.concurrency = 1; return options }(), stop: stop)
                _ = try await eventually("the first tenant waits at the gate") { try await holder.fetchValue("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::bigint & 4294967295)::oid", gate, as: Int.self) == 1 }
                let terminated = try await holder.fetchValue(
                    """
                    SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
                      AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid
                    """, key, as: Int.self)
                #expect(terminated == 1)
                _ = try await eventually("the run notices the lost lock") { stop.isStopped }
                _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", gate)
                let report = try await running
                #expect(report.run.status == .interrupted)
                #expect(report.run.error?.contains("fleet lock was lost") == true)
                #expect(report.items.map(\.status) == [.succeeded, .pending, .pending])

                let resumed = try await released.fleet.resume(runID: report.run.id)
                #expect(resumed.run.status == .completed)
            }
        }
    }

    /// A run's last write does not overwrite what another process recorded after finding it
    /// abandoned.
    @Test(arguments: StoreKind.allCases)
    func theLastWriteOfARunThatAnotherProcessFoundAbandonedChangesNothing(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1"])
            let store = try await tenancy.registry.ready()
            let first = try await store.beginFleetRun(tenantIDs: [], target: nil, parameters: "{}")
            let second = try await store.beginFleetRun(tenantIDs: [], target: nil, parameters: "{}")
            try await store.finishFleetRun(id: first, status: .completed, error: nil)
            #expect(try await tenancy.registry.fleetRun(id: first)?.status == .interrupted)
            try await store.finishFleetRun(id: second, status: .completed, error: nil)
            #expect(try await tenancy.registry.fleetRun(id: second)?.status == .completed)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTenantWhoseTableIsLockedFailsAfterTheLockTimeoutAndTheOthersMigrate(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2", "t3"])
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            let released = try fixture.makeTenancy()
            var options = FleetMigrator.Options()
            options.tenantLockTimeout = .milliseconds(200)
            try await tenancy.database(for: "t2").withTransaction { busy in
                _ = try await busy.fetchAll("SELECT * FROM {{tables.accounts}}")
                let report = try await released.fleet.run(.all, options: options)
                #expect(report.items.map(\.status) == [.succeeded, .failed, .succeeded])
                #expect(report.failures.first?.error?.contains("table lock") == true)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aRunOverNamedTenantsRefusesAnUnknownOneBeforeWritingAnything(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2"])
            await #expect {
                try await tenancy.fleet.run(.tenants([try TenantSlug("t1"), try TenantSlug("nobody")]))
            } throws: { ($0 as? TenancyError)?.code == .tenantNotFound }
            #expect(try await tenancy.registry.fleetRuns().isEmpty)

            let report = try await tenancy.fleet.run(.tenants([try TenantSlug("t2"), try TenantSlug("t2")]))
            #expect(report.items.map(\.slug) == ["t2"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func migrateAllTenantsThrowsNamingTheFailedTenantsAndTheRun(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let tenancy = try fixture.makeTenancy()
            try await onboard(tenancy, ["t1", "t2"], negative: ["t2"])
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            await #expect {
                try await fixture.makeTenancy().migrateAllTenants()
            } throws: { error in
                let error = error as? TenancyError
                return error?.code == .migrationFailed && error?.slug == "t2" && error?.description.contains("resume run") == true
            }
        }
    }
}
