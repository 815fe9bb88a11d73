import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// Online moves between placements on the second test server (`wal_level = logical`): the
/// tenant is served while it is copied, writes wait only for the final catch-up, every
/// acknowledged write arrives, and an interrupted move leaves no replication slot behind.
@Suite(integration, .serialized, .timeLimit(.minutes(3)))
struct OnlineMoveTests {
    /// The second server, or `nil` outside CI when it is not configured.
    static var secondServer: DatabaseConfig? {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["TENANCY_TEST_SECOND_SERVER_URL"], !url.isEmpty else { return nil }
            var config = try DatabaseConfig(url: url)
            config.retry = .none
            config.maximumConnections = 8
            return config
        }
    }

    /// A fixture with placements `src` and `dst` (two databases of the second server) and
    /// tenant `acme` on `src` holding accounts and invoices.
    static func withLogicalPlacements(_ store: StoreKind, addingMigrations extra: [String: String] = [:], _ body: @escaping @Sendable (TenancyFixture, Tenancy, DatabaseConfig, DatabaseConfig) async throws -> Void) async throws {
        guard let server = try secondServer else {
            #expect(!TestPostgres.isCI, "CI must start a second PostgreSQL server with wal_level=logical (TENANCY_TEST_SECOND_SERVER_URL; scripts/test does)")
            return
        }
        try await TenancyFixture.run(store) { fixture in
            for (name, content) in extra { try fixture.writeMigration(name, content) }
            try await TestPostgres.withPool(configuration: server) { admin in
                try await TestPostgres.withTemporaryDatabase(pool: admin) { source in
                    try await TestPostgres.withTemporaryDatabase(pool: admin) { target in
                        let tenancy = try PlacementTests.makeTenancy(fixture)
                        try await PlacementTests.running(tenancy) {
                            _ = try await tenancy.addPlacement("src", database: source)
                            _ = try await tenancy.addPlacement("dst", database: target)
                            _ = try await tenancy.create("acme", placement: "src")
                            let acme = try await tenancy.database(for: "acme")
                            for index in 1...30 {
                                let id = try await acme.insertReturningID("INSERT INTO {{tables.accounts}} (email, balance) VALUES ($1, $2)", "u\(index)@acme.test", index, as: Int.self)
                                try await acme.execute("INSERT INTO {{tables.invoices}} (account_id, total) VALUES ($1, $2)", id, Decimal(index))
                            }
                            try await body(fixture, tenancy, source, target)
                        }
                    }
                }
            }
        }
    }

    /// The replication objects named `name` left on the source and target.
    static func leftovers(_ name: String, source: DatabaseConfig, target: DatabaseConfig) async throws -> Int64 {
        let onSource = try await TestPostgres.withPool(configuration: source) {
            try await $0.database(schema: nil).fetchValue(
                "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $1)", name, as: Int64.self)
        }
        let onTarget = try await TestPostgres.withPool(configuration: target) {
            try await $0.database(schema: nil).fetchValue("SELECT count(*) FROM pg_subscription WHERE subname = $1", name, as: Int64.self)
        }
        return (onSource ?? 0) + (onTarget ?? 0)
    }

    @Test(arguments: StoreKind.allCases)
    func anOnlineMoveServesTheTenantThroughoutAndLosesNoAcknowledgedWrite(store: StoreKind) async throws {
        try await Self.withLogicalPlacements(store) { fixture, tenancy, source, target in
            let schema = try #require(try await tenancy.tenant("acme")).schema
            let writer = Task {
                var (index, acknowledged) = (0, [(String, ContinuousClock.Instant)]())
                while !Task.isCancelled {
                    index += 1
                    let email = "w\(index)@acme.test"
                    do {
                        try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", email)
                        acknowledged.append((email, ContinuousClock.now))
                    } catch {
                        try? await Task.sleep(for: .milliseconds(2))
                    }
                }
                return acknowledged
            }
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            let report = try await tenancy.move("acme", to: "dst")
            let finished = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(300))
            writer.cancel()
            let written = await writer.value

            #expect(report.outcome == .moved && report.mode == .online && report.tenant.placement == "dst")
            #expect(report.refusedMilliseconds < report.totalMilliseconds)
            // The tenant took writes while it was being moved.
            #expect(written.contains { $0.1 > started && $0.1 < finished })
            let found = Set(try await tenancy.database(for: "acme").fetchAll("SELECT email FROM {{tables.accounts}}", as: String.self))
            #expect(written.map(\.0).filter { !found.contains($0) }.isEmpty, "acknowledged writes missing on the target")
            #expect(found.count == 30 + written.count)
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: try SQLIdentifier(schema)).name, source: source, target: target) == 0)
            let reconciled = try await tenancy.reconcile()
            #expect(reconciled.isClean && reconciled.findings.map(\.kind) == [.movedAwaySchema])
        }
    }

    /// Writers waiting on the move's lock may hold every other connection of the source's
    /// pool: the move takes what it needs before it locks, and finishes.
    @Test func anOnlineMoveFinishesWhileWritersHoldEveryOtherConnection() async throws {
        try await Self.withLogicalPlacements(.postgres) { fixture, tenancy, source, target in
            let writers = (0..<16).map { writer in
                Task {
                    var (index, acknowledged) = (0, [String]())
                    while !Task.isCancelled {
                        index += 1
                        let email = "w\(writer)-\(index)@acme.test"
                        if (try? await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", email)) != nil {
                            acknowledged.append(email)
                        }
                    }
                    return acknowledged
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            let report = try await tenancy.move("acme", to: "dst")
            #expect(ContinuousClock.now - started < .seconds(20))
            #expect(report.outcome == .moved && report.refusedMilliseconds < 10_000, "writes held \(report.refusedMilliseconds) ms")
            try await Task.sleep(for: .milliseconds(200))
            writers.forEach { $0.cancel() }
            var written: [String] = []
            for writer in writers { written += await writer.value }
            let found = Set(try await tenancy.database(for: "acme").fetchAll("SELECT email FROM {{tables.accounts}}", as: String.self))
            #expect(!written.isEmpty && written.allSatisfy { found.contains($0) }, "acknowledged writes missing on the target")
        }
    }

    /// A replica whose rows differ from the source's (here a trigger that fires only where
    /// changes are applied by replication rewrites one value) is caught by the check of every
    /// row: nothing is switched, and the tenant stays served where it was.
    @Test func anOnlineMoveWhoseReplicaDiffersIsNotSwitched() async throws {
        let tamper = """
            CREATE FUNCTION {{schema}}.tamper() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('session_replication_role') = 'replica' AND NEW.email = 'u7@acme.test' THEN NEW.balance := NEW.balance + 1; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER tamper BEFORE INSERT OR UPDATE ON {{tables.accounts}} FOR EACH ROW EXECUTE FUNCTION {{schema}}.tamper();
            ALTER TABLE {{tables.accounts}} ENABLE ALWAYS TRIGGER tamper;
            """
        try await Self.withLogicalPlacements(.postgres, addingMigrations: ["003_tamper.sql": tamper]) { fixture, tenancy, source, target in
            let schema = try SQLIdentifier(try #require(try await tenancy.tenant("acme")).schema)
            let error = await #expect(throws: TenancyError.self) { try await tenancy.move("acme", to: "dst") }
            #expect(error?.code == .databaseFailed && error?.message.contains("table accounts (same row count, other contents)") == true, "\(String(describing: error))")
            #expect(error?.message.contains("acme.test") == false, "no data value in the error")
            let tenant = try #require(try await tenancy.tenant("acme"))
            #expect(tenant.state == .moving && tenant.placement == "src")
            // Still served, and writable, where it was.
            try await tenancy.database(for: "acme").execute("UPDATE {{tables.accounts}} SET balance = balance + 1 WHERE email = $1", "u1@acme.test")
            let rolledBack = try await tenancy.abortMove("acme")
            #expect(rolledBack.outcome == .rolledBack && rolledBack.tenant.state == .active && rolledBack.tenant.placement == "src")
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: schema).name, source: source, target: target) == 0)
        }
    }

    /// A copy the target server keeps failing (here a trigger that refuses one replicated row)
    /// fails the move after a few attempts instead of waiting out the copy's hour; the tenant
    /// stays served where it was and the rollback leaves nothing behind.
    @Test func anOnlineMoveWhoseCopyKeepsFailingStopsEarly() async throws {
        let refuse = """
            CREATE FUNCTION {{schema}}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF current_setting('session_replication_role') = 'replica' AND NEW.email = 'u7@acme.test' THEN RAISE EXCEPTION 'refused'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON {{tables.accounts}} FOR EACH ROW EXECUTE FUNCTION {{schema}}.refuse();
            ALTER TABLE {{tables.accounts}} ENABLE ALWAYS TRIGGER refuse;
            """
        try await Self.withLogicalPlacements(.sqlite, addingMigrations: ["003_refuse.sql": refuse]) { fixture, tenancy, source, target in
            let schema = try SQLIdentifier(try #require(try await tenancy.tenant("acme")).schema)
            let started = ContinuousClock.now
            let error = await #expect(throws: TenancyError.self) { try await tenancy.move("acme", to: "dst") }
            #expect(error?.message.contains("failed 3 times to copy the tenant") == true, "\(String(describing: error))")
            #expect(ContinuousClock.now - started < .seconds(60))
            #expect(try await tenancy.tenant("acme")?.placement == "src")
            try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "during@acme.test")
            #expect(try await tenancy.abortMove("acme").tenant.state == .active)
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: schema).name, source: source, target: target) == 0)
        }
    }

    @Test(arguments: MoveStep.allCases)
    func anOnlineMoveKilledAtAnyStepIsFinishedByAnotherProcessAndLeavesNoSlot(step: MoveStep) async throws {
        try await Self.withLogicalPlacements(.postgres) { fixture, tenancy, source, target in
            let schema = try SQLIdentifier(try #require(try await tenancy.tenant("acme")).schema)
            await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: "dst", mode: .online, stoppingAfter: step) }
            // Until the freeze, the tenant moving online is still served from its placement.
            if step != .sourceFrozen {
                try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "during@acme.test")
            }
            let second = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(second) {
                let report = try await second.resumeMove("acme")
                #expect(report.outcome == .moved && report.mode == .online && report.tenant.placement == "dst")
                let emails = try await second.database(for: "acme").fetchAll("SELECT email FROM {{tables.accounts}}", as: String.self)
                #expect(emails.count == (step == .sourceFrozen ? 30 : 31))
            }
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: schema).name, source: source, target: target) == 0)
        }
    }

    @Test func anOnlineMoveRolledBackLeavesTheSourceWritableAndNoSlot() async throws {
        try await Self.withLogicalPlacements(.sqlite) { fixture, tenancy, source, target in
            let schema = try #require(try await tenancy.tenant("acme")).schema
            await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: "dst", mode: .online, stoppingAfter: .targetCommitted) }
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: try SQLIdentifier(schema)).name, source: source, target: target) == 3)
            let report = try await tenancy.abortMove("acme")
            #expect(report.outcome == .rolledBack && report.tenant.placement == "src" && report.tenant.state == .active)
            #expect(try await Self.leftovers(try tenancy.lifecycle.replication(of: try SQLIdentifier(schema)).name, source: source, target: target) == 0)
            #expect(try await PlacementTests.schemaExists(schema, in: target) == false)
            try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "after@acme.test")
            #expect(try await tenancy.reconcile().findings.isEmpty)
        }
    }

    @Test func reconcileDropsReplicationLeftByAMoveOfThisFleetAndNoOther() async throws {
        try await Self.withLogicalPlacements(.postgres) { fixture, tenancy, source, target in
            let schema = try SQLIdentifier(try #require(try await tenancy.tenant("acme")).schema)
            let registryID = try await tenancy.ready().id
            // What a process killed between the switch and the tidying leaves: a publication and a slot.
            let ours = LogicalReplication(schema: try SQLIdentifier("tt_gone"), registryID: registryID)
            let theirs = LogicalReplication(schema: try SQLIdentifier("tt_gone"), registryID: "another-fleet")
            try await TestPostgres.withPool(configuration: source) { pool in
                for replication in [ours, theirs] { try await replication.start(schema, tables: ["accounts"], on: pool.database(schema: nil)) }
            }
            let found = try await tenancy.reconcile()
            #expect(found.findings.map(\.kind) == [.leftoverReplication] && !found.isClean)
            let fixed = try await tenancy.reconcile(fix: true)
            #expect(fixed.findings.map(\.fixed) == [true])
            #expect(try await Self.leftovers(ours.name, source: source, target: target) == 0)
            #expect(try await Self.leftovers(theirs.name, source: source, target: target) == 2)
            try await TestPostgres.withPool(configuration: source) { pool in try await theirs.stop(target: nil, source: pool.database(schema: nil)) }
        }
    }

    @Test func aTenantThatCannotBeCopiedOrReplicatedIsRefusedAndNothingChanges() async throws {
        try await Self.withLogicalPlacements(.sqlite) { fixture, tenancy, _, _ in
            // A table made outside the migration set has nowhere to go, online or offline.
            let acme = try await tenancy.database(for: "acme")
            try await acme.execute("CREATE TABLE {{tables.scratch}} (id serial PRIMARY KEY)")
            for mode in MoveMode.allCases {
                do {
                    _ = try await tenancy.move("acme", to: "dst", mode: mode)
                    Issue.record("a tenant with a table its migrations do not make was moved \(mode)")
                } catch let error as TenancyError {
                    #expect(error.code == .invalidArgument && error.description.contains("scratch"))
                }
            }
            try await acme.execute("DROP TABLE {{tables.scratch}}")

            // A table without a primary key (from a migration): its updates could not be published.
            try fixture.writeMigration("003_audit.sql", "CREATE TABLE {{tables.audit}} (at timestamptz NOT NULL DEFAULT now(), note text);")
            let upgraded = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(upgraded) {
                _ = try await upgraded.migrateAllTenants()
                do {
                    _ = try await upgraded.move("acme", to: "dst")
                    Issue.record("a tenant with a table without a primary key was moved online")
                } catch let error as TenancyError {
                    #expect(error.code == .invalidArgument && error.description.contains("audit") && error.description.contains("offline"))
                }
                #expect(try await upgraded.tenant("acme")?.state == .active)
                // A tenant on a server without wal_level=logical (the default test server).
                _ = try await upgraded.create("globex", placement: "default")
                await #expect { try await upgraded.move("globex", to: "dst") } throws: { "\($0)".contains("wal_level") }
                #expect(try await upgraded.tenant("globex")?.state == .active)
                // Offline, both go.
                #expect(try await upgraded.move("acme", to: "dst", mode: .offline).outcome == .moved)
                #expect(try await upgraded.move("globex", to: "dst", mode: .offline).outcome == .moved)
            }
        }
    }
}
