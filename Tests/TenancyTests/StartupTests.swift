import Foundation
import InMemoryLogging
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

/// A server's start: the fleet migrated or checked, one bad tenant fenced, a tenant behind the
/// migration set never served.
@Suite(integration, .timeLimit(.minutes(2)))
struct StartupTests {
    static let positiveBalances = "ALTER TABLE {{tables.accounts}} ADD CONSTRAINT balance_positive CHECK (balance >= 0);"

    @Test(arguments: StoreKind.allCases)
    func aTenantBehindTheMigrationSetIsRefusedUntilItIsMigrated(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let previous = try fixture.makeTenancy()
            try await previous.create("acme")
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy()

            await #expect { try await released.database(for: "acme") } throws: {
                guard let error = $0 as? TenancyError, error.code == .migrationPending else { return false }
                return "\(error)".contains("002_invoices.sql") && "\(error)".contains("1 files behind") && !"\(error)".contains(fixture.schemaPrefix)
            }
            let check = try await released.checkMigrationLevels()
            #expect(check.behind.map(\.tenant.slug.rawValue) == ["acme"] && check.behind.first?.pendingFiles == 1)
            #expect(check.current == 0 && !check.isReady && check.currentLevel?.lastFile == "003_notes.sql")
            // The release before serves it: its code matches the schema.
            #expect(try await previous.database(for: "acme").tableExists("accounts"))

            // Migrated by another process (nothing is announced), it is served within the
            // refusal's short life, with no eviction.
            try await fixture.makeTenancy().migrateAllTenants()
            let waited = try await eventually("acme is served once migrated", timeout: .seconds(5)) {
                (try? await released.database(for: "acme")) != nil
            }
            #expect(waited < .seconds(3))
            #expect(try await released.checkMigrationLevels().isReady)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTenantMigratedByANewerReleaseIsServedByTheOlderOne(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            try await fixture.makeTenancy().create("acme")
            try FileManager.default.removeItem(at: fixture.migrationsURL.appendingPathComponent("003_notes.sql"))
            let older = try fixture.makeTenancy()

            #expect(try await older.database(for: "acme").tableExists("notes"))
            let check = try await older.checkMigrationLevels()
            #expect(check.ahead.map(\.slug.rawValue) == ["acme"] && check.isReady)
        }
    }

    /// A rolling deploy: a replica of the older release onboards a tenant after the fleet was
    /// migrated. Replicas of the new release that migrate on first request serve it at once,
    /// migrating it once between them; a tenant whose migration fails is refused, not served.
    @Test(arguments: StoreKind.allCases)
    func aReplicaThatMigratesOnFirstRequestServesATenantTheOlderReleaseOnboarded(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let older = try fixture.makeTenancy()
            for slug in ["acme", "bad"] { try await older.create(slug) }
            try await older.database(for: "bad").execute("INSERT INTO {{tables.accounts}} (email, balance) VALUES ('o@bad.test', -5)")
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            let replicas = try (0..<2).map { _ in try fixture.makeTenancy { $0.directory.migratesTenantsBehindMigrationSet = true } }

            async let first = replicas[0].database(for: "acme").tableExists("accounts")
            async let second = replicas[1].database(for: "acme").tableExists("accounts")
            let served = try await (first, second)
            #expect(served == (true, true))
            let acme = try #require(try await replicas[0].tenant("acme"))
            #expect(acme.migrationLevel == replicas[0].currentLevel)
            let history = try await replicas[0].migrationHistory(for: "acme")
            #expect(history.filter { $0.filename == "003_positive.sql" }.count == 1)
            let events = try await replicas[0].registry.events(for: try TenantSlug("acme")).map(\.kind)
            #expect(events.filter { $0 == .migrated }.count == 1)

            await #expect { try await replicas[1].database(for: "bad") } throws: { ($0 as? TenancyError)?.code == .migrationPending }
            #expect(try await replicas[1].tenant("bad")?.migrationLevel != replicas[1].currentLevel)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func theGateCanBeTurnedOff(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await fixture.makeTenancy().create("acme")
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let released = try fixture.makeTenancy { $0.directory.refusesTenantsBehindMigrationSet = false }
            #expect(try await released.database(for: "acme").tableExists("notes") == false)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aTenantFailingItsMigrationAtStartIsFencedAndTheServerStarts(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            let previous = try fixture.makeTenancy()
            for slug in ["good", "bad"] {
                try await previous.create(slug)
                try await previous.database(for: slug).execute("INSERT INTO {{tables.accounts}} (email, balance) VALUES ($1, $2)", "o@\(slug).test", slug == "bad" ? -5 : 5)
            }
            try fixture.writeMigration("003_positive.sql", Self.positiveBalances)
            let logs = InMemoryLogHandler()
            let released = try fixture.makeTenancy(logger: Logger(label: "t", factory: { _ in logs }))

            let report = try await released.prepareForServing()
            #expect(report.fleetRun?.run.status == .completedWithFailures)
            #expect(report.levels.behind.map(\.tenant.slug.rawValue) == ["bad"] && report.levels.current == 1)
            #expect(try await released.database(for: "good").fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 1)
            await #expect { try await released.database(for: "bad") } throws: { ($0 as? TenancyError)?.code == .migrationPending }
            let failure = logs.entries.first { $0.message.description.contains("tenant migration failed at start-up") }
            #expect(failure?.level == .error && failure?.metadata[TenancyLoggingKeys.tenantSlug] == "bad")
            #expect(failure.map { "\($0.metadata)".contains("-5") } == false, "no data value in the log")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func anotherProcessesFleetRunIsWaitedForWithinTheBoundAndLogged(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await fixture.makeTenancy().create("acme")
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            let logs = InMemoryLogHandler()
            let released = try fixture.makeTenancy(logger: Logger(label: "t", factory: { _ in logs }))
            let key = try released.lifecycle.requireMigrations().fleetLockKey(schemaPrefix: fixture.schemaPrefix)

            try await fixture.pool.database(schema: nil).withConnection { operator_ in
                _ = try await operator_.fetchAll("SELECT pg_advisory_lock($1)", key)
                var options = Tenancy.StartupOptions()
                options.fleetLockWait = .seconds(8)
                let start = ContinuousClock.now
                let report = try await released.prepareForServing(options)
                let elapsed = ContinuousClock.now - start
                _ = try await operator_.fetchAll("SELECT pg_advisory_unlock($1)", key)

                #expect(elapsed >= .seconds(8) && elapsed < .seconds(20))
                #expect(report.fleetRun == nil)
                #expect(report.levels.behind.map(\.tenant.slug.rawValue) == ["acme"])
            }
            let waits = logs.entries.filter { $0.message.description.contains("waiting for another process's fleet migration") }
            #expect(waits.count >= 2, "logged at the start of the wait and every few seconds")
            #expect(logs.entries.contains { $0.level == .warning && $0.message.description.contains("outlasted the start-up wait") })
            await #expect { try await released.database(for: "acme") } throws: { ($0 as? TenancyError)?.code == .migrationPending }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aServerThatDoesNotMigrateOnlyChecks(store: StoreKind) async throws {
        try await TenancyFixture.run(store) { fixture in
            try await fixture.makeTenancy().create("acme")
            try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
            var options = Tenancy.StartupOptions()
            options.migrates = false
            let report = try await fixture.makeTenancy().prepareForServing(options)
            #expect(report.fleetRun == nil && report.levels.behind.count == 1)
            #expect(try await fixture.makeTenancy().registry.fleetRuns().isEmpty)
        }
    }
}
