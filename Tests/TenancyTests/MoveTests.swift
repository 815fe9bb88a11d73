import Foundation
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// Offline moves of a tenant between placements: every row arrives, a process killed at any
/// step leaves a move that is finished or rolled back, and no acknowledged write is lost.
@Suite(integration, .timeLimit(.minutes(3)))
struct MoveTests {
    /// A fixture with placement `eu-2` (an empty database of its own) and tenant `acme` on
    /// the default placement, holding accounts and invoices.
    static func withMovableTenant(_ store: StoreKind, _ body: @escaping @Sendable (TenancyFixture, Tenancy, DatabaseConfig) async throws -> Void) async throws {
        try await PlacementTests.withPlacements(store, count: 1) { fixture, databases in
            let tenancy = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(tenancy) {
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                _ = try await tenancy.create("acme", placement: "default")
                let acme = try await tenancy.database(for: "acme")
                for index in 1...40 {
                    let email = index % 7 == 0 ? "zoë+\(index)@acme.test\t'\"\\" : "user\(index)@acme.test"
                    let id = try await acme.insertReturningID("INSERT INTO {{tables.accounts}} (email, balance) VALUES ($1, $2)", email, index * 10, as: Int.self)
                    try await acme.execute("INSERT INTO {{tables.invoices}} (account_id, total) VALUES ($1, $2)", id, Decimal(string: "\(index).25")!)
                }
                try await body(fixture, tenancy, databases[0])
            }
        }
    }

    /// Every account email of `slug`, read through its handle.
    static func emails(_ tenancy: Tenancy, _ slug: String) async throws -> [String] {
        try await tenancy.database(for: slug).fetchAll("SELECT email FROM {{tables.accounts}} ORDER BY id", as: String.self)
    }

    @Test(arguments: StoreKind.allCases)
    func anOfflineMoveCopiesEveryRowFreezesTheSourceAndSwitchesTheTenant(store: StoreKind) async throws {
        try await Self.withMovableTenant(store) { fixture, tenancy, other in
            let before = try await Self.emails(tenancy, "acme")
            let stale = try await tenancy.database(for: "acme")
            let report = try await tenancy.move("acme", to: "eu-2", mode: .offline)
            #expect(report.outcome == .moved && report.rows == 80 && report.tables == 2 && report.tenant.placement == "eu-2" && report.tenant.state == .active)
            #expect(try await tenancy.tenant("acme")?.placement == "eu-2")

            // The handle now routes to the copy, which has every row and continues its sequences.
            #expect(try await Self.emails(tenancy, "acme") == before)
            let acme = try await tenancy.database(for: "acme")
            let next = try await acme.insertReturningID("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "new@acme.test", as: Int.self)
            #expect(next == 41)
            let total = try await acme.fetchValue("SELECT sum(total)::text FROM {{tables.invoices}}", as: String.self)
            #expect(total == "830.00")
            #expect(try await PlacementTests.schemaExists(report.tenant.schema, in: other))

            // The source stays, frozen: a handle taken before the move can no longer write.
            await #expect { try await stale.execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "lost@acme.test") } throws: {
                ($0 as? SchemaDBError)?.sqlState == "25006"
            }
            #expect(try await stale.fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 40)
            // A migration that reaches the frozen source late (from a fleet run that read the
            // tenant before the move) fails there and leaves it as it was.
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY);")
            let late = try PlacementTests.makeTenancy(fixture).lifecycle.requireMigrations()
            try FileManager.default.removeItem(at: fixture.migrationsURL.appendingPathComponent("003_notes.sql"))
            await #expect { try await late.migrator(for: stale).apply() } throws: { ($0 as? SchemaDBError)?.sqlState == "25006" }
            #expect(try await stale.fetchValue("SELECT to_regclass($1) IS NULL", "\(SQLIdentifier.quote(report.tenant.schema)).notes", as: Bool.self) == true)
            #expect(try await tenancy.registry.events(for: TenantSlug("acme")).prefix(2).map(\.kind) == [.moved, .moveStarted])

            // Reconcile reports the frozen source, which needs nothing; cleanup drops it once old enough.
            let reconciled = try await tenancy.reconcile()
            #expect(reconciled.isClean && reconciled.findings.map(\.kind) == [.movedAwaySchema])
            #expect(try await tenancy.dropMovedAwaySchemas(olderThan: .seconds(3600)).map(\.dropped) == [false])
            #expect(try await fixture.existingSchemas() == [report.tenant.schema])

            // Moving back drops the frozen leftover (on eu-2 now) and copies the new row too.
            let back = try await tenancy.move("acme", to: "default", mode: .offline)
            #expect(back.outcome == .moved && back.rows == 81)
            #expect(try await Self.emails(tenancy, "acme") == before + ["new@acme.test"])
            #expect(try await tenancy.move("acme", to: "default", mode: .offline).outcome == .alreadyThere)
            let cleaned = try await tenancy.dropMovedAwaySchemas()
            #expect(cleaned.map(\.placement) == ["eu-2"] && cleaned.allSatisfy(\.dropped))
            #expect(try await PlacementTests.schemaExists(report.tenant.schema, in: other) == false)
            #expect(try await tenancy.reconcile().findings.isEmpty)
        }
    }

    @Test(arguments: MoveStep.allCases)
    func aMoveKilledAtAnyStepIsFinishedByAnotherProcess(step: MoveStep) async throws {
        try await Self.withMovableTenant(.postgres) { fixture, tenancy, other in
            let before = try await Self.emails(tenancy, "acme")
            await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: "eu-2", mode: .offline, stoppingAfter: step) }
            #expect(try await tenancy.tenant("acme")?.state == .moving)
            #expect(await errorCode { try await tenancy.database(for: "acme") } == .tenantMoving)
            #expect(try await tenancy.reconcile().findings.contains { $0.kind == .unfinishedMove && $0.detail.contains("did not finish") })

            let second = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(second) {
                let report = try await second.resumeMove("acme")
                #expect(report.outcome == .moved && report.tenant.placement == "eu-2" && report.tenant.state == .active)
                #expect(try await Self.emails(second, "acme") == before)
                let reconciled = try await second.reconcile()
                #expect(reconciled.isClean && reconciled.findings.map(\.kind) == [.movedAwaySchema])
            }
            #expect(try await PlacementTests.schemaExists(try #require(try await tenancy.tenant("acme")).schema, in: other))
        }
    }

    @Test(arguments: MoveStep.allCases)
    func aMoveKilledAtAnyStepIsRolledBackLeavingTheSourceWritable(step: MoveStep) async throws {
        try await Self.withMovableTenant(.sqlite) { fixture, tenancy, other in
            let schema = try #require(try await tenancy.tenant("acme")).schema
            await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: "eu-2", mode: .offline, stoppingAfter: step) }
            let report = try await tenancy.abortMove("acme")
            #expect(report.outcome == .rolledBack && report.tenant.placement == "default" && report.tenant.state == .active)
            #expect(try await PlacementTests.schemaExists(schema, in: other) == false)
            try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "after@acme.test")
            #expect(try await Self.emails(tenancy, "acme").count == 41)
            #expect(try await tenancy.reconcile().findings.isEmpty)
        }
    }

    /// The databases print values differently (another time zone, day-first dates, SQL
    /// intervals, fewer float digits, escaped bytea): rows travel and are checked as the same
    /// text on both sides, so a move there and back keeps every value and is not refused.
    @Test func aMoveBetweenDatabasesThatPrintValuesDifferentlyKeepsEveryValue() async throws {
        try await PlacementTests.withPlacements(.postgres, count: 1) { fixture, databases in
            try fixture.writeMigration("003_readings.sql", """
                CREATE TABLE {{tables.readings}} (id serial PRIMARY KEY, at timestamptz NOT NULL, day date NOT NULL, span interval NOT NULL, ratio float8 NOT NULL, raw bytea NOT NULL);
                """)
            let other = try SQLIdentifier(try #require(databases[0].database))
            for setting in ["TimeZone = 'Pacific/Chatham'", "DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'", "extra_float_digits = -3", "bytea_output = 'escape'"] {
                try await fixture.pool.database(schema: nil).execute(try SQLTemplate("ALTER DATABASE \(other.quoted) SET \(setting)"))
            }
            let tenancy = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(tenancy) {
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                _ = try await tenancy.create("acme", placement: "default")
                let read: SQLTemplate = "SELECT at::text || ' ' || day::text || ' ' || span::text || ' ' || ratio::text || ' ' || encode(raw, 'hex') FROM {{tables.readings}} ORDER BY id"
                try await tenancy.database(for: "acme").execute(
                    "INSERT INTO {{tables.readings}} (at, day, span, ratio, raw) VALUES ('2026-03-05 10:11:12.345678+00', '2026-03-05', '1 day 02:03:04.5', 0.1, '\\x00ff'), ('2026-12-31 23:59:59+00', '2026-11-02', '-3 mons', 1e-300, '\\x5c27')")
                let before = try await tenancy.database(for: "acme").withTransaction { tx in
                    try await SchemaCopier.pinTextFormat(in: tx)
                    return try await tx.fetchAll(read, as: String.self)
                }
                for destination in ["eu-2", "default"] {
                    let report = try await tenancy.move("acme", to: destination, mode: .offline)
                    #expect(report.outcome == .moved && report.rows == 2, "to \(destination)")
                    let after = try await tenancy.database(for: "acme").withTransaction { tx in
                        try await SchemaCopier.pinTextFormat(in: tx)
                        return try await tx.fetchAll(read, as: String.self)
                    }
                    #expect(after == before, "to \(destination)")
                }
            }
        }
    }

    /// A replica that has not heard of a move (its announcement is late, or it does not
    /// listen) sends a write to the frozen source: the write fails there, and its retry
    /// reads the registry again and reaches the tenant where it went.
    @Test(arguments: StoreKind.allCases)
    func aWriteTheMovedAwaySourceRefusesIsRetriedWhereTheTenantWent(store: StoreKind) async throws {
        try await Self.withMovableTenant(store) { fixture, tenancy, _ in
            let replica = try PlacementTests.makeTenancy(fixture) {
                $0.listensForChanges = false
                $0.directory.timeToLive = .seconds(50)
            }
            try await PlacementTests.running(replica) {
                let insert: SQLTemplate = "INSERT INTO {{tables.accounts}} (email) VALUES ($1)"
                try await replica.database(for: "acme").execute(insert, "before@acme.test")
                _ = try await tenancy.move("acme", to: "eu-2", mode: .offline)
                await #expect { try await replica.database(for: "acme").execute(insert, "refused@acme.test") } throws: {
                    ($0 as? SchemaDBError)?.sqlState == "25006"
                }
                try await replica.database(for: "acme").execute(insert, "retried@acme.test")
                #expect(try await Self.emails(tenancy, "acme").suffix(2) == ["before@acme.test", "retried@acme.test"])
                #expect(try await replica.tenant("acme")?.placement == "eu-2")
            }
        }
    }

    /// Two processes that move one tenant at once, or finish and roll back one move at once,
    /// leave exactly one writable copy, the one the registry routes to.
    @Test func processesRacingOverOneMoveLeaveExactlyOneWritableCopy() async throws {
        try await Self.withMovableTenant(.postgres) { fixture, tenancy, other in
            let schema = try #require(try await tenancy.tenant("acme")).schema
            let second = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(second) {
                let expectedCodes: Set<TenancyError.Code> = [.concurrentChange, .provisioningInProgress, .tenantMoving, .illegalTransition]
                /// The outcome of `operation`, or the code of the error it refused with.
                @Sendable func outcome(_ operation: @Sendable () async throws -> MoveReport) async -> String {
                    do { return try await operation().outcome.rawValue } catch let error as TenancyError where expectedCodes.contains(error.code) {
                        return "refused"
                    } catch { return "failed: \(error)" }
                }
                /// The registry's copy takes writes; the other is gone or frozen.
                func checkOneWritableCopy(_ round: Int) async throws {
                    let tenant = try #require(try await tenancy.tenant("acme"))
                    #expect(tenant.state == .active, "round \(round)")
                    // A write sent before the other process's announcement arrives fails on the
                    // frozen copy and evicts the tenant; the retry goes where the registry says.
                    let insert: SQLTemplate = "INSERT INTO {{tables.accounts}} (email) VALUES ($1)"
                    do {
                        try await tenancy.database(for: "acme").execute(insert, "round\(round)@acme.test")
                    } catch let error as SchemaDBError where error.sqlState == "25006" {
                        try await tenancy.database(for: "acme").execute(insert, "round\(round)@acme.test")
                    }
                    let elsewhere = tenant.placement == "eu-2" ? fixture.pool.database(schema: nil) : nil
                    let frozenElsewhere: Bool
                    if let elsewhere {
                        frozenElsewhere = try await SchemaCopier.isFrozen(try SQLIdentifier(schema), on: elsewhere)
                    } else {
                        frozenElsewhere = try await TestPostgres.withPool(configuration: other) { try await SchemaCopier.isFrozen(try SQLIdentifier(schema), on: $0.database(schema: nil)) }
                    }
                    let existsElsewhere = tenant.placement == "eu-2"
                        ? try await fixture.pool.database(schema: try SQLIdentifier(schema)).schemaExists()
                        : try await PlacementTests.schemaExists(schema, in: other)
                    #expect(!existsElsewhere || frozenElsewhere, "round \(round): a second writable copy")
                }

                // Both start the same move.
                async let first = outcome { try await tenancy.move("acme", to: "eu-2", mode: .offline) }
                async let racing = outcome { try await second.move("acme", to: "eu-2", mode: .offline) }
                let starts = await [first, racing]
                #expect(starts.filter { $0 == "moved" }.count == 1, "\(starts)")
                #expect(starts.allSatisfy { ["moved", "already_there", "refused"].contains($0) }, "\(starts)")
                try await checkOneWritableCopy(0)

                // One finishes and one rolls back an interrupted move, round after round, both ways.
                for round in 1...4 {
                    let destination = try #require(try await tenancy.tenant("acme")).placement == "eu-2" ? "default" : "eu-2"
                    await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: destination, mode: .offline, stoppingAfter: .markedMoving) }
                    async let resumed = outcome { try await tenancy.resumeMove("acme") }
                    async let aborted = outcome { try await second.abortMove("acme") }
                    let results = await [resumed, aborted]
                    #expect(results.allSatisfy { ["moved", "rolled_back", "refused"].contains($0) }, "round \(round): \(results)")
                    if try await tenancy.tenant("acme")?.state == .moving { _ = try await tenancy.abortMove("acme") }
                    try await checkOneWritableCopy(round)
                }

                // A process that read the moving tenant before another rolled the move back
                // acts on nothing once it holds the move lock: it neither copies nor freezes.
                let destination = try #require(try await tenancy.tenant("acme")).placement == "eu-2" ? "default" : "eu-2"
                await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: destination, mode: .offline, stoppingAfter: .markedMoving) }
                let stale = try await tenancy.lifecycle.record(TenantSlug("acme"))
                _ = try await second.abortMove("acme")
                let migrations = try tenancy.lifecycle.requireMigrations()
                await #expect { try await tenancy.lifecycle.finishMove(stale, migrations: migrations) } throws: { ($0 as? TenancyError)?.code == .concurrentChange }
                try await checkOneWritableCopy(5)
            }
        }
    }

    @Test func aMovingTenantIsLockedAgainstOtherChanges() async throws {
        try await Self.withMovableTenant(.sqlite) { fixture, tenancy, _ in
            await #expect(throws: MoveStopped.self) { try await tenancy.lifecycle.move(TenantSlug("acme"), to: "eu-2", mode: .offline, stoppingAfter: .markedMoving) }
            #expect(await errorCode { try await tenancy.suspend("acme") } == .tenantMoving)
            #expect(await errorCode { try await tenancy.rename("acme", to: "acme-2") } == .tenantMoving)
            #expect(await errorCode { try await tenancy.delete("acme", confirmingDataLoss: true) } == .illegalTransition)
            #expect(await errorCode { try await tenancy.create("acme") } == .tenantMoving)
            #expect(await errorCode { try await tenancy.move("acme", to: "default", mode: .offline) } == .tenantMoving)
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY);")
            let upgraded = try PlacementTests.makeTenancy(fixture)
            try await PlacementTests.running(upgraded) {
                let run = try await upgraded.fleet.run(.all)
                #expect(run.failures.map(\.slug) == ["acme"] && run.failures.first?.error?.contains("moving") == true)
                // The new release finishes the move at the level the tenant was at, then migrates it.
                let finished = try await upgraded.resumeMove("acme")
                #expect(finished.outcome == .moved)
                #expect(await errorCode { try await upgraded.database(for: "acme") } == .migrationPending)
                #expect(try await upgraded.fleet.resume(runID: run.run.id).run.status == .completed)
                // The refusal cached a moment ago lifts within the directory's short refusal time.
                try await eventually("the migrated tenant is served") {
                    (try? await upgraded.database(for: "acme").fetchValue("SELECT count(*) FROM {{tables.notes}}", as: Int.self)) == 0
                }
            }
        }
    }

    @Test func noAcknowledgedWriteIsLostWhileAWriterRunsThroughTheMove() async throws {
        try await Self.withMovableTenant(.postgres) { fixture, tenancy, _ in
            let writer = Task {
                var (index, acknowledged) = (0, [String]())
                while !Task.isCancelled {
                    index += 1
                    let email = "w\(index)@acme.test"
                    do {
                        try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", email)
                        acknowledged.append(email)
                    } catch {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
                return acknowledged
            }
            try await Task.sleep(for: .milliseconds(200))
            _ = try await tenancy.move("acme", to: "eu-2", mode: .offline)
            try await Task.sleep(for: .milliseconds(300))
            writer.cancel()
            let written = await writer.value
            let found = Set(try await Self.emails(tenancy, "acme"))
            #expect(written.count > 10)
            #expect(written.filter { !found.contains($0) }.isEmpty, "acknowledged writes missing on the target")
            #expect(try await tenancy.tenant("acme")?.placement == "eu-2")
        }
    }
}
