import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// Tenants spread over several PostgreSQL databases: the default one, others on the same
/// server, one behind a proxy that can go down, and one on a second server.
@Suite(integration, .timeLimit(.minutes(3)))
struct PlacementTests {
    /// Runs `body` with a fixture and `count` more empty databases on the test server.
    static func withPlacements(_ store: StoreKind, count: Int, _ body: @escaping @Sendable (TenancyFixture, [DatabaseConfig]) async throws -> Void) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await TestPostgres.withPool { admin in
                try await withDatabases(count, admin: admin, []) { try await body(fixture, $0) }
            }
        }
    }

    private static func withDatabases(_ count: Int, admin: DatabasePool, _ made: [DatabaseConfig], _ body: ([DatabaseConfig]) async throws -> Void) async throws {
        guard made.count < count else { return try await body(made) }
        try await TestPostgres.withTemporaryDatabase(pool: admin) { config in try await withDatabases(count, admin: admin, made + [config], body) }
    }

    /// Whether `schema` exists in the database `config` names.
    static func schemaExists(_ schema: String, in config: DatabaseConfig) async throws -> Bool {
        try await TestPostgres.withPool(configuration: config) { try await $0.database(schema: try SQLIdentifier(schema)).schemaExists() }
    }

    /// A `Tenancy` over the fixture's client, which it can run: its placement pools run with it.
    static func makeTenancy(_ fixture: TenancyFixture, configure: (inout Tenancy.Configuration) -> Void = { _ in }) throws -> Tenancy {
        try fixture.makeTenancy(pool: DatabasePool(borrowing: fixture.pool.client, maximumConnections: 8, logger: TenancyFixture.silent), configure: configure)
    }

    /// Runs `body` with `tenancy` running (its placement pools need it).
    static func running<Result: Sendable>(_ tenancy: Tenancy, _ body: () async throws -> Result) async throws -> Result {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await tenancy.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    @Test(arguments: StoreKind.allCases)
    func tenantsLiveOnTheirPlacementAndEveryOperationFollowsThem(store: StoreKind) async throws {
        try await Self.withPlacements(store, count: 1) { fixture, databases in
            let other = databases[0]
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                let added = try await tenancy.addPlacement("eu-2", database: other)
                #expect(added.databaseName == other.database && added.url?.contains("***") == false && added.state == .open)

                // Explicit placement, then the policy: fewest tenants per weight, ties to the default.
                let acme = try await tenancy.create("acme", placement: "eu-2").tenant
                #expect(acme.placement == "eu-2")
                #expect(try await tenancy.create("globex").tenant.placement == "default")
                #expect(try await tenancy.create("initech").tenant.placement == "default")
                #expect(try await tenancy.create("hooli").tenant.placement == "eu-2")
                _ = try await tenancy.setPlacement("eu-2", weight: 3)
                #expect(try await tenancy.create("umbrella").tenant.placement == "eu-2")

                // The schema is on the placement's database only, and the handle writes there.
                #expect(try await Self.schemaExists(acme.schema, in: other))
                #expect(try await fixture.existingSchemas().contains(acme.schema) == false)
                let handle = try await tenancy.database(for: "acme")
                try await handle.execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test")
                let stored = try await TestPostgres.withPool(configuration: other) {
                    try await $0.database(schema: try SQLIdentifier(acme.schema)).fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self)
                }
                #expect(stored == 1)

                // Draining sends new tenants elsewhere and refuses an explicit request.
                _ = try await tenancy.setPlacement("eu-2", state: .draining)
                #expect(try await tenancy.create("stark").tenant.placement == "default")
                #expect(await errorCode { try await tenancy.create("wayne", placement: "eu-2") } == .invalidArgument)
                #expect(try await fixture.record("wayne") == nil)
                _ = try await tenancy.setPlacement("eu-2", state: .open)

                // A fleet run reaches both databases; reconcile finds them consistent.
                try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text);")
                let upgraded = try Self.makeTenancy(fixture)
                try await Self.running(upgraded) {
                    let report = try await upgraded.migrateAllTenants()
                    #expect(report.run.counts.succeeded == 6)
                    let notes = try await upgraded.database(for: "acme").fetchValue("SELECT count(*) FROM {{tables.notes}}", as: Int.self)
                    #expect(notes == 0)
                    #expect(try await upgraded.reconcile().findings.isEmpty)
                }

                // Counts per placement, and deleting drops the schema where it lives.
                let reports = try await tenancy.placementReports()
                #expect(reports.map(\.placement.name) == ["default", "eu-2"])
                #expect(reports.map(\.counts.tenants) == [3, 3] && reports.allSatisfy(\.isReachable))
                #expect((reports[1].tenantBytes ?? 0) > 0 && reports[0].placement.identity != nil)
                _ = try await tenancy.delete("acme", confirmingDataLoss: true)
                #expect(try await Self.schemaExists(acme.schema, in: other) == false)
            }
        }
    }

    @Test func addingAPlacementChecksItsDatabaseAndKeepsNoPassword() async throws {
        try await Self.withPlacements(.sqlite, count: 1) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                #expect(await errorCode { try await tenancy.addPlacement("EU", database: databases[0]) } == .invalidArgument)
                #expect(await errorCode { try await tenancy.addPlacement("default", database: databases[0]) } == .placementExists)
                // The default placement's own database cannot be added again under another name.
                #expect(await errorCode { try await tenancy.addPlacement("again", database: fixture.pool.configuration!) } == .placementExists)
                var unreachable = databases[0]
                unreachable.port = 1
                unreachable.password = "s3cret-value"
                do {
                    _ = try await tenancy.addPlacement("gone", database: unreachable)
                    Issue.record("an unreachable database was added")
                } catch let error as TenancyError {
                    #expect(error.code == .placementUnreachable && !error.description.contains("s3cret-value"))
                }
                var withPassword = databases[0]
                withPassword.password = "s3cret-value"
                let added = try await tenancy.addPlacement("eu-2", database: withPassword)
                #expect(added.url?.contains("s3cret") == false)
                #expect(await errorCode { try await tenancy.addPlacement("eu-2", database: databases[0]) } == .placementExists)
                #expect(await errorCode { try await tenancy.addPlacement("eu-3", database: databases[0]) } == .placementExists)
                #expect(try await tenancy.registry.placements().map(\.name) == ["default", "eu-2"])
                #expect(await errorCode { try await tenancy.create("acme", placement: "nowhere") } == .placementNotFound)
                #expect(try await fixture.record("acme") == nil)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aPlacementThatIsDownFailsOnlyItsOwnTenantsAndAResumePicksThemUp(store: StoreKind) async throws {
        try await Self.withPlacements(store, count: 1) { fixture, databases in
            let proxy = try await FaultProxy.start(upstreamHost: databases[0].host, upstreamPort: databases[0].port)
            defer { Task { try? await proxy.close() } }
            var viaProxy = databases[0]
            (viaProxy.host, viaProxy.port) = ("127.0.0.1", proxy.port)
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                _ = try await tenancy.addPlacement("flaky", database: viaProxy)
                for slug in ["far-1", "far-2", "far-3"] { _ = try await tenancy.create(slug, placement: "flaky") }
                for slug in ["near-1", "near-2"] { _ = try await tenancy.create(slug, placement: "default") }
                try await self.placementGoesDownAndComesBack(tenancy, fixture: fixture, proxy: proxy, viaProxy: viaProxy)
            }
        }
    }

    /// The placement behind `proxy` goes down: a process that was serving it and a process
    /// that starts meanwhile each refuse only its tenants; once it is back, both serve them again.
    private func placementGoesDownAndComesBack(_ tenancy: Tenancy, fixture: TenancyFixture, proxy: FaultProxy, viaProxy: DatabaseConfig) async throws {
        let serving = try await tenancy.database(for: "far-1")
        _ = try await serving.fetchValue("SELECT 1", as: Int.self)
        proxy.cutAllConnections()
        // Whether or not the pool has seen the close yet, the query fails within moments.
        try await Task.sleep(for: .milliseconds(Int.random(in: 0...500)))
        do {
            _ = try await tenancy.database(for: "far-1").fetchValue("SELECT 1", as: Int.self)
            Issue.record("a query reached a placement that is down")
        } catch let error as SchemaDBError {
            #expect(error.code == .connectionFailed && error.description.contains("placement \"flaky\" at 127.0.0.1:\(proxy.port)"))
        }
        #expect(try await tenancy.database(for: "near-1").fetchValue("SELECT 1", as: Int.self) == 1)

        // Another process (a fresh instance): the placement's tenants are refused with an
        // error naming it; the others are served.
        try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text);")
        let other = try Self.makeTenancy(fixture) { $0.placementDatabases = ["flaky": viaProxy] }
        try await Self.running(other) {
            do {
                _ = try await other.database(for: "far-1")
                Issue.record("a tenant on a placement that is down was served")
            } catch let error as TenancyError {
                #expect(error.code == .placementUnreachable && error.description.contains("\"flaky\"") && error.slug == "far-1")
            }
            // A fleet run migrates the reachable tenants and fails the others at once.
            let start = ContinuousClock.now
            let report = try await other.fleet.run(.all)
            #expect(ContinuousClock.now - start < .seconds(20))
            #expect(report.run.status == .completedWithFailures)
            #expect(report.items.filter { $0.status == .succeeded }.compactMap(\.slug).sorted() == ["near-1", "near-2"])
            #expect(report.failures.compactMap(\.slug).sorted() == ["far-1", "far-2", "far-3"])
            #expect(report.failures.allSatisfy { $0.error?.contains("flaky") == true })
            let notes = try await other.database(for: "near-1").fetchValue("SELECT count(*) FROM {{tables.notes}}", as: Int.self)
            #expect(notes == 0)
            let reconciled = try await other.reconcile()
            #expect(reconciled.findings.map(\.kind) == [.unavailablePlacement])

            // Back up: a resume migrates only the tenants it failed.
            proxy.acceptConnections()
            try await Task.sleep(for: PlacementPools.failureMemory)
            let resumed = try await other.fleet.resume(runID: report.run.id)
            #expect(resumed.run.status == .completed)
            #expect(resumed.items.filter { $0.attempts == 2 }.compactMap(\.slug).sorted() == ["far-1", "far-2", "far-3"])
            let farNotes = try await other.database(for: "far-2").fetchValue("SELECT count(*) FROM {{tables.notes}}", as: Int.self)
            #expect(farNotes == 0)
        }
        // The process that served the placement before it went down serves it again.
        try await eventually("the placement is served again", timeout: .seconds(20)) {
            (try? await tenancy.database(for: "far-1").fetchValue("SELECT 1", as: Int.self)) == 1
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aPlacementIsRemovedOnlyOnceDrainedEmptyAndCleanedUp(store: StoreKind) async throws {
        try await Self.withPlacements(store, count: 1) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                _ = try await tenancy.create("acme", placement: "eu-2")
                func refusal(_ name: String) async -> TenancyError? {
                    do { try await tenancy.removePlacement(name) } catch let error as TenancyError { return error } catch { return nil }
                    return nil
                }
                #expect(await refusal("eu-2")?.message.contains("it is open; drain it first") == true)
                _ = try await tenancy.setPlacement("eu-2", state: .draining)
                #expect(await refusal("eu-2")?.message.contains("1 tenants, spares or moves still name it") == true)
                _ = try await tenancy.move("acme", to: "default", mode: .offline)
                #expect(await refusal("eu-2")?.message.contains("read-only schemas that moves left behind") == true)
                _ = try await tenancy.dropMovedAwaySchemas()
                try await tenancy.removePlacement("eu-2")
                #expect(try await tenancy.placementReports().map(\.placement.name) == ["default"])
                #expect(await refusal("eu-2")?.code == .placementNotFound)
                #expect(await refusal("default")?.message.contains("cannot be removed") == true)
                // The tenant that left it is served where it went.
                #expect(try await tenancy.database(for: "acme").fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 0)
            }
        }
    }

    /// No row ever names a placement the registry no longer has: a write naming a removed
    /// placement is refused, and a removal waits for a write that names the placement and has
    /// not committed yet (another process's spare fill, say), then sees its row and refuses.
    @Test(arguments: StoreKind.allCases)
    func aPlacementIsNeverRemovedFromUnderAWriteThatNamesIt(store: StoreKind) async throws {
        try await Self.withPlacements(store, count: 2) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                for (name, database) in zip(["eu-2", "eu-3"], databases) {
                    _ = try await tenancy.addPlacement(name, database: database)
                    _ = try await tenancy.setPlacement(name, state: .draining)
                }
                try await tenancy.removePlacement("eu-3")
                let registry = tenancy.registry.store
                await #expect { _ = try await registry.insert(.new(slug: nil, displayName: nil, schema: "\(fixture.schemaPrefix)gone", placement: "eu-3", state: .spare), event: .spareCreated, detail: nil) } throws: {
                    ($0 as? TenancyError)?.code == .placementNotFound
                }
                _ = try await tenancy.create("acme")
                let record = try await tenancy.lifecycle.record(TenantSlug("acme"))
                let moving = TenantChange(state: .moving, move: .some(TenantMove(target: "eu-3", returnState: .active, mode: .offline)), event: .moveStarted)
                await #expect { _ = try await registry.update(record, moving) } throws: {
                    ($0 as? TenancyError)?.code == .placementNotFound
                }
                let unchanged = try await tenancy.lifecycle.record(TenantSlug("acme"))
                #expect(unchanged.generation == record.generation && unchanged.state == .active && unchanged.move == nil)

                guard let postgres = registry as? PostgresRegistryStore else { return }
                let removal = try await fixture.pool.database(schema: nil).withTransaction { tx in
                    _ = try await postgres.session(in: tx).insert(
                        .new(slug: nil, displayName: nil, schema: "\(fixture.schemaPrefix)late", placement: "eu-2", state: .spare), event: .spareCreated, detail: nil)
                    let removal = Task { try await tenancy.removePlacement("eu-2") }
                    try await Task.sleep(for: .milliseconds(300))
                    return removal
                }
                await #expect { try await removal.value } throws: { ($0 as? TenancyError)?.message.contains("1 tenants, spares or moves still name it") == true }
                #expect(try await tenancy.placementReports().map(\.placement.name) == ["default", "eu-2"])
            }
        }
    }

    /// The server behind a placement's URL is swapped while a process serves it (a DNS name or
    /// a virtual IP moved to another server that has a database of the same name): every
    /// connection is checked before its first use, so no query and no tenant reaches the other
    /// server; the placement's tenants are refused with the mismatch, and served again once
    /// the URL leads back.
    @Test func aServerSwappedInBehindAPlacementsURLGetsNoQuery() async throws {
        guard let second = try OnlineMoveTests.secondServer else {
            #expect(!TestPostgres.isCI, "CI must start a second PostgreSQL server (TENANCY_TEST_SECOND_SERVER_URL; scripts/test does)")
            return
        }
        try await Self.withPlacements(.postgres, count: 1) { fixture, databases in
            let real = databases[0]
            let proxy = try await FaultProxy.start(upstreamHost: real.host, upstreamPort: real.port)
            defer { Task { try? await proxy.close() } }
            var viaProxy = real
            (viaProxy.host, viaProxy.port) = ("127.0.0.1", proxy.port)
            try await TestPostgres.withPool(configuration: second) { admin in
                let impostor = try SQLIdentifier(try #require(real.database))
                try await admin.database(schema: nil).execute(try SQLTemplate("CREATE DATABASE \(impostor.quoted)"))
                do {
                    try await swapTheServer(fixture: fixture, proxy: proxy, viaProxy: viaProxy, real: real, second: second)
                } catch {
                    _ = try? await admin.database(schema: nil).execute(try SQLTemplate("DROP DATABASE \(impostor.quoted) WITH (FORCE)"))
                    throw error
                }
                try await admin.database(schema: nil).execute(try SQLTemplate("DROP DATABASE \(impostor.quoted) WITH (FORCE)"))
            }
        }
    }

    private func swapTheServer(fixture: TenancyFixture, proxy: FaultProxy, viaProxy: DatabaseConfig, real: DatabaseConfig, second: DatabaseConfig) async throws {
        let tenancy = try Self.makeTenancy(fixture) { $0.placementDatabases = ["eu-2": viaProxy] }
        try await Self.running(tenancy) {
            _ = try await tenancy.addPlacement("eu-2", database: viaProxy)
            _ = try await tenancy.create("acme", placement: "eu-2")
            let count: SQLTemplate = "SELECT count(*) FROM {{tables.accounts}}"
            try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test")

            proxy.redirect(toHost: second.host, port: second.port)
            proxy.cutAllConnections()
            proxy.acceptConnections()
            try await eventually("a query names the mismatch", timeout: .seconds(10)) {
                do {
                    _ = try await tenancy.database(for: "acme").fetchValue(count, as: Int.self)
                    Issue.record("a query was answered after the server was swapped")
                    return true
                } catch {
                    return "\(error)".contains("now leads to")
                }
            }
            try await eventually("the placement is refused as a mismatch", timeout: .seconds(10)) {
                await errorCode { try await tenancy.create("globex", placement: "eu-2") } == .placementMismatch
            }
            var onImpostor = second
            onImpostor.database = real.database
            let schemas = try await TestPostgres.withPool(configuration: onImpostor) {
                try await $0.database(schema: nil).fetchValue("SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, $1)", fixture.schemaPrefix, as: Int.self)
            }
            #expect(schemas == 0)

            // The URL leads back: the tenant is served, with its row.
            proxy.redirect(toHost: real.host, port: real.port)
            proxy.cutAllConnections()
            proxy.acceptConnections()
            try await eventually("the tenant is served again", timeout: .seconds(20)) {
                (try? await tenancy.database(for: "acme").fetchValue(count, as: Int.self)) == 1
            }
        }
    }

    @Test func aPlacementWhoseURLNowLeadsToAnotherDatabaseIsRefused() async throws {
        try await Self.withPlacements(.postgres, count: 2) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                _ = try await tenancy.create("acme", placement: "eu-2")
            }
            // Another process's configuration points eu-2 at another database.
            let misconfigured = try Self.makeTenancy(fixture) { $0.placementDatabases = ["eu-2": databases[1]] }
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text);")
            try await Self.running(misconfigured) {
                #expect(await errorCode { try await misconfigured.database(for: "acme") } == .placementMismatch)
                #expect(await errorCode { try await misconfigured.create("globex", placement: "eu-2") } == .placementMismatch)
                let report = try await misconfigured.fleet.run(.all)
                #expect(report.failures.map(\.slug) == ["acme"])
            }
            // Nothing was created in the database it now points at.
            let schemas = try await TestPostgres.withPool(configuration: databases[1]) {
                try await $0.database(schema: nil).fetchAll("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", fixture.schemaPrefix, as: String.self)
            }
            #expect(schemas.isEmpty)
            #expect(try await fixture.record("globex") == nil)
        }
    }

    @Test func aRebalanceMovesTenantsUntilEachPlacementHasItsShare() async throws {
        try await Self.withPlacements(.postgres, count: 1) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                for slug in ["t-1", "t-2", "t-3", "t-4", "t-5"] { _ = try await tenancy.create(slug) }
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                let plan = try await tenancy.rebalancePlan()
                #expect(plan.moves.count == 2 && plan.loads.map(\.after) == [3, 2])
                #expect(try await tenancy.registry.countByPlacement()["eu-2"] == nil)
                let moved = try await tenancy.apply(plan, mode: .offline)
                #expect(moved.map(\.outcome) == [.moved, .moved])
                #expect(try await tenancy.registry.countByPlacement().mapValues(\.tenants) == ["default": 3, "eu-2": 2])
                #expect(try await tenancy.rebalancePlan().moves.isEmpty)
                for move in plan.moves { #expect(try await tenancy.database(for: move.slug).fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 0) }
                // By bytes, the tenant with rows is worth several empty ones; it stays, and empty
                // ones leave its placement.
                try await tenancy.database(for: "t-1").execute(
                    "INSERT INTO {{tables.accounts}} (email) SELECT 'user' || i || '@t1.test' FROM generate_series(1, 20000) i")
                // A moved tenant grows on its new placement; its frozen old copy on the default one does not count.
                let grown = try #require(plan.moves.first?.slug)
                try await tenancy.database(for: grown).execute(
                    "INSERT INTO {{tables.accounts}} (email) SELECT 'user' || i || '@grown.test' FROM generate_series(1, 2000) i")
                let byBytes = try await tenancy.rebalancePlan(by: .bytes)
                #expect(byBytes.measure == .bytes && byBytes.loads.map(\.placement) == ["default", "eu-2"])
                #expect(!byBytes.moves.isEmpty && byBytes.moves.allSatisfy { $0.from == "default" && $0.slug != "t-1" }, "\(byBytes.moves)")
                #expect(byBytes.loads[1].before == (try await tenancy.lifecycle.placements.pool(for: "eu-2").database(schema: nil).fetchValue(
                    "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE starts_with(n.nspname, $1) AND c.relkind IN ('r', 'm', 'p')",
                    fixture.schemaPrefix, as: Int64.self)))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func sparesAreKeptAndClaimedPerPlacement(store: StoreKind) async throws {
        try await Self.withPlacements(store, count: 1) { fixture, databases in
            let tenancy = try Self.makeTenancy(fixture)
            try await Self.running(tenancy) {
                _ = try await tenancy.addPlacement("eu-2", database: databases[0])
                let spares = try await tenancy.fillSpares(count: 2, placement: "eu-2")
                #expect(spares.count == 2 && spares.allSatisfy { $0.placement == "eu-2" })
                for spare in spares { #expect(try await Self.schemaExists(spare.schema, in: databases[0])) }
                // A tenant for the default placement does not take a spare of another one.
                #expect(try await tenancy.create("globex", placement: "default").outcome == .provisioned)
                let claimed = try await tenancy.create("acme", placement: "eu-2")
                #expect(claimed.outcome == .claimedSpare && claimed.tenant.schema == spares[0].schema && claimed.tenant.placement == "eu-2")
                _ = try await tenancy.setPlacement("eu-2", state: .draining)
                #expect(await errorCode { try await tenancy.fillSpares(count: 1, placement: "eu-2") } == .invalidArgument)
                #expect(try await tenancy.registry.spares(on: "eu-2").count == 1)
            }
        }
    }

    /// Runs `scripts/postgres` (`start` or `stop`, keeping the data) for the test server on
    /// `port`. Spawned and waited for directly, with no descriptor but the standard three:
    /// Foundation's `Process` reports no exit while a daemon it started (the server) still
    /// holds the descriptor it watches.
    static func postgresScript(_ command: String, port: Int) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/postgres").path
        let environment = ProcessInfo.processInfo.environment.merging(["TENANCY_PG_PORT": "\(port)", "TENANCY_PG_FSYNC": "off", "TENANCY_PG_KEEP": "1"]) { $1 }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                let argv: [UnsafeMutablePointer<CChar>?] = ([script, command] as [String]).map { strdup($0) } + [nil]
                let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
                defer { (argv + envp).forEach { free($0) } }
                var actions = posix_spawn_file_actions_t()
                posix_spawn_file_actions_init(&actions)
                defer { posix_spawn_file_actions_destroy(&actions) }
                posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
                posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
                // The server outlives the test: it must not hold this process's sockets and files
                // open, or a connection the test closes never ends for its other side.
                guard let closeFrom = Self.spawnActionClosingFrom else {
                    return continuation.resume(throwing: TestFailure("this C library lacks posix_spawn_file_actions_addclosefrom_np (glibc 2.34 or later)"))
                }
                _ = closeFrom(&actions, 3)
                var pid = pid_t()
                let spawned = posix_spawn(&pid, script, &actions, nil, argv, envp)
                guard spawned == 0 else { return continuation.resume(throwing: TestFailure("cannot run \(script): error \(spawned)")) }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: (status >> 8) & 0xff)
            }
        }
        guard status == 0 else { throw TestFailure("scripts/postgres \(command) on port \(port) exited with \(status)") }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np`, which Swift's Glibc module does not
    /// declare.
    private static let spawnActionClosingFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Three placements on three servers; the third server is stopped in the middle of a fleet
    /// run, while one of its tenants is being migrated: its tenants fail, naming it, while the
    /// others are migrated; once it is started again, a resume migrates the rest.
    @Test func aServerStoppedDuringAFleetRunFailsOnlyItsTenantsAndAResumeFinishesThem() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let secondURL = environment["TENANCY_TEST_SECOND_SERVER_URL"], !secondURL.isEmpty,
              let port = environment["TENANCY_TEST_THIRD_SERVER_PORT"].flatMap(Int.init) else {
            #expect(!TestPostgres.isCI, "CI must start a second and a third PostgreSQL server (scripts/test does)")
            return
        }
        var (second, third) = (try DatabaseConfig(url: secondURL), try DatabaseConfig(url: "postgres://postgres@127.0.0.1:\(port)/postgres"))
        (second.retry, third.retry) = (.none, .none)
        try await TenancyFixture.run(.postgres) { fixture in
            try await TestPostgres.withPool(configuration: second) { secondAdmin in
                try await TestPostgres.withTemporaryDatabase(pool: secondAdmin) { two in
                    try await TestPostgres.withPool(configuration: third) { thirdAdmin in
                        try await TestPostgres.withTemporaryDatabase(pool: thirdAdmin) { three in
                            let tenancy = try Self.makeTenancy(fixture)
                            try await Self.running(tenancy) {
                                _ = try await tenancy.addPlacement("two", database: two)
                                _ = try await tenancy.addPlacement("three", database: three)
                                for slug in ["one-1", "one-2"] { _ = try await tenancy.create(slug, placement: "default") }
                                for slug in ["two-1", "two-2"] { _ = try await tenancy.create(slug, placement: "two") }
                                for slug in ["three-1", "three-2", "three-3", "three-4"] { _ = try await tenancy.create(slug, placement: "three") }
                            }
                            // Each tenant waits at a gate that is open except on the third server once
                            // its first tenant is migrated; a tenant waiting there when it stops fails.
                            let gate = Int64.random(in: 1 ... .max)
                            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY); SELECT pg_sleep(0.3); SELECT pg_advisory_xact_lock(\(gate));")
                            let upgraded = try Self.makeTenancy(fixture)
                            try await Self.running(upgraded) {
                                var options = FleetMigrator.Options()
                                options.concurrencyPerPlacement = 1
                                // The server stops once the first of its tenants is migrated.
                                let (migratedOnThree, signal) = AsyncStream<Void>.makeStream()
                                let stopper = Task {
                                    for await _ in migratedOnThree { break }
                                    try await TestPostgres.withPool(configuration: three) { holder in
                                        try await holder.database(schema: nil).withConnection { session in
                                            _ = try await session.fetchAll("SELECT pg_advisory_lock($1)", gate)
                                            try await Self.postgresScript("stop", port: port)
                                        }
                                    }
                                }
                                let report: FleetReport
                                do {
                                    report = try await upgraded.fleet.run(.all, options: options) { progress in
                                        if let latest = progress.latest, latest.slug?.hasPrefix("three-") == true, latest.status == .succeeded { signal.yield() }
                                    }
                                    signal.finish()
                                    try await stopper.value
                                } catch {
                                    signal.finish()
                                    try? await stopper.value
                                    try await Self.postgresScript("start", port: port)
                                    throw error
                                }
                                do {
                                    #expect(report.run.status == .completedWithFailures)
                                    let succeeded = Set(report.items.filter { $0.status == .succeeded }.compactMap(\.slug))
                                    #expect(succeeded.isSuperset(of: ["one-1", "one-2", "two-1", "two-2"]))
                                    #expect(report.failures.count >= 2 && report.failures.allSatisfy { $0.slug?.hasPrefix("three-") == true })
                                    #expect(report.failures.allSatisfy { $0.error?.contains("three") == true }, "\(report.failures.map(\.error))")
                                }
                                try await Self.postgresScript("start", port: port)
                                try await Task.sleep(for: PlacementPools.failureMemory)
                                let resumed = try await upgraded.fleet.resume(runID: report.run.id)
                                #expect(resumed.run.status == .completed, "\(resumed.failures.map(\.error))")
                                for slug in ["three-1", "three-2", "three-3", "three-4"] {
                                    try await eventually("\(slug) is served at the new level", timeout: .seconds(20)) {
                                        (try? await upgraded.database(for: slug).fetchValue("SELECT count(*) FROM {{tables.notes}}", as: Int.self)) == 0
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @Test func onASecondServerTheTenantLivesInAnotherCluster() async throws {
        guard let url = ProcessInfo.processInfo.environment["TENANCY_TEST_SECOND_SERVER_URL"], !url.isEmpty else {
            #expect(!TestPostgres.isCI, "CI must start a second PostgreSQL server (TENANCY_TEST_SECOND_SERVER_URL; scripts/test does)")
            return
        }
        var second = try DatabaseConfig(url: url)
        second.retry = .none
        try await TenancyFixture.run(.postgres) { fixture in
            try await TestPostgres.withPool(configuration: second) { admin in
                try await TestPostgres.withTemporaryDatabase(pool: admin) { database in
                    let tenancy = try Self.makeTenancy(fixture)
                    try await Self.running(tenancy) {
                        let placement = try await tenancy.addPlacement("far", database: database)
                        #expect(placement.systemIdentifier != (try await tenancy.ready()).database?.systemIdentifier)
                        let acme = try await tenancy.create("acme", placement: "far").tenant
                        #expect(try await Self.schemaExists(acme.schema, in: database))
                        try await tenancy.database(for: "acme").execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@acme.test")
                        _ = try await tenancy.delete("acme", confirmingDataLoss: true)
                    }
                }
            }
        }
    }
}

@Suite struct PlacementPolicyTests {
    static func placement(_ name: String, weight: Int = 1, state: Placement.State = .open) -> Placement {
        Placement(name: name, url: nil, systemIdentifier: nil, databaseName: nil, weight: weight, state: state, createdAt: Date())
    }

    static func counts(_ tenants: Int) -> PlacementCounts { PlacementCounts(byState: [.active: tenants, .spare: 50]) }

    @Test func newTenantsGoWhereTheFewestAreForTheirWeight() async throws {
        let placements = [Self.placement("default"), Self.placement("eu-2", weight: 2), Self.placement("us-1", state: .draining)]
        let counts = ["default": Self.counts(10), "eu-2": Self.counts(19), "us-1": Self.counts(0)]
        // eu-2 holds 19 for weight 2 (9.5 each) against 10: it is next; spares do not count.
        #expect(try await PlacementPolicy.choose(nil, among: placements, counts: { counts }) == "eu-2")
        let even = ["default": Self.counts(10), "eu-2": Self.counts(20)]
        #expect(try await PlacementPolicy.choose(nil, among: placements, counts: { even }) == "default")
        #expect(try await PlacementPolicy.choose("default", among: placements, counts: { counts }) == "default")
        await #expect { try await PlacementPolicy.choose("us-1", among: placements, counts: { counts }) } throws: {
            ($0 as? TenancyError)?.code == .invalidArgument && "\($0)".contains("draining")
        }
        await #expect { try await PlacementPolicy.choose("nowhere", among: placements, counts: { counts }) } throws: {
            ($0 as? TenancyError)?.code == .placementNotFound
        }
        await #expect { try await PlacementPolicy.choose(nil, among: [Self.placement("x", state: .draining)], counts: { [:] }) } throws: {
            ($0 as? TenancyError)?.code == .invalidArgument
        }
    }

    @Test func aRebalancePlanGivesEachOpenPlacementItsShareAndEmptiesDrainingOnes() throws {
        let placements = [Self.placement("default"), Self.placement("eu-2"), Self.placement("eu-3", weight: 2, state: .draining)]
        let tenants = (0..<10).map { (slug: "d\($0)", placement: "default") } + (0..<4).map { (slug: "e\($0)", placement: "eu-3") }
        let plan = try RebalancePlan.make(tenants: tenants, placements: placements)
        #expect(plan.loads.map(\.target) == [7, 7, 0] && plan.loads.map(\.after) == [7, 7, 0] && plan.loads.map(\.before) == [10, 0, 4])
        #expect(plan.moves.count == 7 && plan.moves.allSatisfy { $0.to == "eu-2" })
        #expect(Set(plan.moves.map(\.slug)).count == 7)
        #expect(try RebalancePlan.make(tenants: tenants, placements: placements, maximumMoves: 2).moves.count == 2)
        // Weights: 2 to 1 over 9 tenants is 6 and 3.
        let weighted = try RebalancePlan.make(tenants: (0..<9).map { (slug: "t\($0)", placement: "default") },
                                              placements: [Self.placement("default"), Self.placement("big", weight: 2)])
        #expect(weighted.loads.map(\.after) == [3, 6])
        let balanced = try RebalancePlan.make(tenants: [("a", "default"), ("b", "eu-2")], placements: Array(placements.prefix(2)))
        #expect(balanced.moves.isEmpty)
        #expect(throws: TenancyError.self) { try RebalancePlan.make(tenants: [], placements: [Self.placement("x", state: .draining)]) }
    }

    @Test func aRebalancePlanByBytesMovesTheTenantsThatBestCloseTheGap() throws {
        let placements = [Self.placement("default"), Self.placement("eu-2")]
        let tenants: [(slug: String, placement: String, size: Int64)] = [("a", "default", 600), ("b", "default", 300), ("c", "default", 100), ("d", "default", 50), ("e", "default", 50)]
        // Shares of 550 each: the 600 tenant alone leaves them 50 apart; nothing else helps.
        let plan = try RebalancePlan.make(tenants: tenants, measure: .bytes, placements: placements)
        #expect(plan.measure == .bytes && plan.moves.map(\.slug) == ["a"] && plan.moves.first?.size == 600)
        #expect(plan.loads.map(\.target) == [550, 550] && plan.loads.map(\.after) == [500, 600])
        // A tenant larger than the gap stays: 100 against 10 moves the small ones only.
        let small = try RebalancePlan.make(tenants: [("big", "default", 100), ("s1", "eu-2", 5), ("s2", "eu-2", 5)], measure: .bytes, placements: placements)
        #expect(small.moves.isEmpty)
        // Draining placements are emptied, each tenant to where the gap is largest.
        let draining = [Self.placement("default"), Self.placement("eu-2"), Self.placement("old", state: .draining)]
        let emptied = try RebalancePlan.make(
            tenants: [("x", "old", 300), ("y", "old", 200), ("z", "default", 500)], measure: .bytes, placements: draining)
        #expect(emptied.loads.last?.after == 0 && Set(emptied.moves.map(\.slug)) == ["x", "y"])
        #expect(emptied.loads.map(\.after) == [500, 500, 0])
    }

    @Test func placementNamesAndTheirEnvironmentVariables() throws {
        #expect(Placement.problem(withName: "eu-2") == nil)
        for bad in ["", "EU", "2eu", "eu_2", "eu 2", String(repeating: "a", count: 41)] { #expect(Placement.problem(withName: bad) != nil) }
        #expect(Placement.environmentVariable(forName: "eu-2") == "TENANCY_PLACEMENT_EU_2_URL")
        let databases = try Tenancy.Configuration.placementDatabases(from: ["TENANCY_PLACEMENT_EU_2_URL": "postgres://app@db2:5433/app", "OTHER": "x"])
        #expect(databases.keys.sorted() == ["eu-2"] && databases["eu-2"]?.port == 5433)
        #expect(throws: TenancyError.self) { try Tenancy.Configuration.placementDatabases(from: ["TENANCY_PLACEMENT__URL": "postgres://a@b/c"]) }
    }
}
