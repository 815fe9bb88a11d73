import Foundation
import GRDB
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

@Suite struct TenantSlugTests {
    @Test(arguments: ["ab", "acme", "acme-corp", "a1", "x-2-y", String(repeating: "a", count: 50)])
    func validSlugsAreAccepted(slug: String) throws {
        #expect(try TenantSlug(slug).rawValue == slug)
    }

    @Test(arguments: [
        "", "a", String(repeating: "a", count: 51), "Acme", "1acme", "-acme", "acme-", "acme_corp", "acme corp",
        "acme'; DROP TABLE tenants; --", "acme\"", "ténant", "acme\n", "😀😀", "public", "postgres", "pg-catalog", "information-schema",
    ])
    func hostileAndReservedSlugsAreRefusedWithTheReason(slug: String) {
        #expect(TenantSlug.problem(with: slug) != nil)
        #expect {
            _ = try TenantSlug(slug)
        } throws: { error in
            let error = error as? TenancyError
            return error?.code == .invalidSlug && error?.description.contains("\n") == false
        }
    }

    @Test(arguments: TenantState.allCases)
    func theLifecycleAllowsOnlyItsDocumentedMoves(from state: TenantState) {
        let expected: [TenantState: Set<TenantState>] = [
            .provisioning: [.active, .failed, .spare], .active: [.suspended, .deleting, .moving], .suspended: [.active, .deleting, .moving],
            .deleting: [.deleted, .active, .suspended, .failed, .spare], .deleted: [], .failed: [.provisioning, .active, .deleting],
            .spare: [.active, .deleting, .deleted], .moving: [.active, .suspended],
        ]
        for next in TenantState.allCases {
            #expect(state.canMove(to: next) == expected[state]!.contains(next), "\(state) → \(next)")
        }
    }
}

/// A registry of `kind` for one test: SQLite in memory, or a schema of the test database
/// dropped afterwards.
func withRegistry(_ kind: StoreKind, _ body: (TenantRegistry) async throws -> Void) async throws {
    switch kind {
    case .sqlite:
        try await body(try TenantRegistry.inMemory())
    case .postgres:
        try await TestPostgres.withPool { pool in
            let schema = try SQLIdentifier(TestPostgres.makeUniqueName(prefix: "reg"))
            do {
                try await body(try TenantRegistry(pool: pool, schema: schema.name, creatingIfMissing: true))
            } catch {
                try? await pool.database(schema: schema).dropSchema(cascade: true)
                throw error
            }
            try await pool.database(schema: schema).dropSchema(cascade: true)
        }
    }
}

@Suite(integration, .timeLimit(.minutes(2)))
struct TenantRegistryTests {
    let level = MigrationLevel(lastFile: "002_b.sql", setChecksum: "abc")

    @Test(arguments: StoreKind.allCases)
    func aRowIsInsertedAndChangedWithItsEventsAndAGenerationPerChange(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            let row = try await store.insert(.new(slug: "acme", displayName: "Acme", schema: "tenant_1", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
            #expect(row.id > 0 && row.generation == 1 && row.state == .provisioning)
            let active = try await store.update(row, TenantChange(state: .active, level: level, event: .provisioned))
            #expect(active.generation == 2)
            let tenant = try #require(try await registry.tenant(slug: try TenantSlug("acme")))
            #expect(tenant.state == .active && tenant.schema == "tenant_1" && tenant.displayName == "Acme")
            #expect(tenant.migrationLevel == level && tenant.generation == 2)
            #expect(try await registry.events(for: try TenantSlug("acme")).map(\.kind) == [.provisioned, .provisioning])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aWriteBasedOnAnOutdatedReadIsRefusedAndChangesNothing(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            let read = try await store.update(
                try await store.insert(.new(slug: "acme", displayName: nil, schema: "tenant_1", placement: "default", state: .provisioning), event: .provisioning, detail: nil),
                TenantChange(state: .active, event: .provisioned))
            // Another process suspends it after this one read it...
            _ = try await store.update(read, TenantChange(state: .suspended, event: .suspended))
            // ...so this one's rename, based on the old read, is refused.
            await #expect { try await store.update(read, TenantChange(slug: try TenantSlug("acme-2"), event: .renamed)) } throws: { error in
                let error = error as? TenancyError
                return error?.code == .concurrentChange && error?.description.contains("now suspended") == true
            }
            let now = try #require(try await store.record(slug: "acme"))
            #expect(now.state == .suspended && now.generation == 3)
            #expect(try await store.record(slug: "acme-2") == nil)
            #expect(try await store.events(tenantID: now.id, limit: 10).count == 3)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSlugGivenUpByARenameIsRefusedToOtherTenantsForTheReuseDelay(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            let acme = try await store.insert(.new(slug: "acme", displayName: nil, schema: "tenant_a", placement: "default", state: .active), event: .provisioned, detail: nil)
            let renamed = try await store.update(acme, TenantChange(slug: try TenantSlug("acme-old"), event: .renamed))
            #expect(renamed.slug == "acme-old" && renamed.schema == "tenant_a")
            await #expect { try await store.insert(.new(slug: "acme", displayName: nil, schema: "tenant_b", placement: "default", state: .provisioning), event: .provisioning, detail: nil) } throws: {
                ($0 as? TenancyError)?.code == .slugRecentlyReleased && "\($0)".contains("acme")
            }
            let spare = try await store.insert(.new(slug: nil, displayName: nil, schema: "tenant_s", placement: "default", state: .spare), event: .spareCreated, detail: nil)
            await #expect {
                try await store.claimSpare(id: nil, at: nil, placement: "default", slug: try TenantSlug("acme"), displayName: nil, verifyingSchemaExists: false)
            } throws: { ($0 as? TenancyError)?.code == .slugRecentlyReleased }
            #expect(try await store.record(id: spare.id)?.state == .spare)
            // The tenant that gave the slug up may take it back at once.
            let back = try await store.update(renamed, TenantChange(slug: try TenantSlug("acme"), event: .renamed))
            #expect(back.slug == "acme")
            // A slug another tenant holds is taken, not cooling down.
            await #expect { try await store.update(spare, TenantChange(state: .active, slug: try TenantSlug("acme"), event: .claimed)) } throws: {
                ($0 as? TenancyError)?.code == .slugTaken
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSpareIsClaimedAtItsLevelOnceAndEveryWaitingRowCountsByState(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            let old = MigrationLevel(lastFile: "001_a.sql", setChecksum: "old")
            let behind = try await store.insert(.new(slug: nil, displayName: nil, schema: "tenant_s1", placement: "default", state: .spare, level: old), event: .spareCreated, detail: nil)
            let current = try await store.insert(.new(slug: nil, displayName: nil, schema: "tenant_s2", placement: "default", state: .spare, level: level), event: .spareCreated, detail: nil)
            #expect(try await store.spares(at: level, placement: "default", after: 0, limit: 5).map(\.id) == [current.id])
            #expect(try await store.spares(at: old, placement: "default", after: 0, limit: 5).map(\.id) == [behind.id])
            #expect(try await store.spares(at: level, placement: "default", after: current.id, limit: 5).isEmpty)
            let claimed = try #require(try await store.claimSpare(id: nil, at: level, placement: "default", slug: try TenantSlug("acme"), displayName: "Acme", verifyingSchemaExists: false))
            #expect(claimed.id == current.id && claimed.state == .active && claimed.slug == "acme" && claimed.displayName == "Acme")
            #expect(try await store.claimSpare(id: nil, at: level, placement: "default", slug: try TenantSlug("globex"), displayName: nil, verifyingSchemaExists: false) == nil)
            #expect(try await store.claimSpare(id: behind.id, at: level, placement: "default", slug: try TenantSlug("globex"), displayName: nil, verifyingSchemaExists: false) == nil)
            #expect(try await registry.spares().map(\.schema) == ["tenant_s1"])
            #expect(try await registry.countByState() == [.active: 1, .spare: 1])
            #expect(try await registry.events(for: try TenantSlug("acme")).map(\.kind) == [.claimed, .spareCreated])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func eightConcurrentClaimersNeverGetTheSameSpare(store kind: StoreKind) async throws {
        try await TenancyFixture.run(kind) { fixture in
            _ = try await fixture.makeTenancy().ready()
            let registries = try (0..<8).map { _ in try fixture.openRegistry() }
            let store = try await registries[0].ready()
            for index in 0..<5 {
                _ = try await store.insert(.new(slug: nil, displayName: nil, schema: "\(fixture.schemaPrefix)s\(index)", placement: "default", state: .spare, level: level), event: .spareCreated, detail: nil)
            }
            let claims = try await withThrowingTaskGroup(of: TenantRecord?.self) { group in
                for (index, registry) in registries.enumerated() {
                    group.addTask {
                        try await registry.ready().claimSpare(id: nil, at: level, placement: "default", slug: try TenantSlug("tenant-\(index)"), displayName: nil, verifyingSchemaExists: false)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let claimed = claims.compactMap { $0 }
            #expect(claimed.count == 5)
            #expect(Set(claimed.map(\.id)).count == 5)
            #expect(try await registries[1].spares().isEmpty)
            #expect(try await registries[2].countByState() == [.active: 5])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func listingFiltersByStateInSlugOrder(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            for name in ["gamma", "alpha", "beta"] {
                _ = try await store.insert(.new(slug: name, displayName: nil, schema: "tenant_\(name)", placement: "default", state: name == "beta" ? .provisioning : .active), event: .provisioning, detail: nil)
            }
            #expect(try await registry.tenants().map(\.slug.rawValue) == ["alpha", "beta", "gamma"])
            #expect(try await registry.tenants(in: .active).map(\.slug.rawValue) == ["alpha", "gamma"])
            #expect(try await registry.tenants(limit: 1, offset: 1).map(\.slug.rawValue) == ["beta"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aRegistryDescribesOneDatabasePrefixAndModuleAndRefusesOthers(store kind: StoreKind) async throws {
        try await withRegistry(kind) { registry in
            let store = try await registry.ready()
            let here = DatabaseIdentity(systemIdentifier: "7001", databaseName: "app")
            #expect(try await registry.info().database == nil)
            let bound = try await store.bind(database: here, schemaPrefix: "tenant_", migrationModule: "tenant")
            #expect(bound.database == here && bound.schemaPrefix == "tenant_" && bound.migrationModule == "tenant")
            #expect(try await store.bind(database: here, schemaPrefix: "tenant_", migrationModule: "tenant") == bound)
            await #expect { try await store.bind(database: here, schemaPrefix: "other_", migrationModule: "tenant") } throws: { error in
                (error as? TenancyError)?.code == .registryMismatch && "\(error)".contains("tenant_")
            }
            await #expect { try await store.bind(database: DatabaseIdentity(systemIdentifier: "7001", databaseName: "staging"), schemaPrefix: "tenant_", migrationModule: "tenant") } throws: {
                ($0 as? TenancyError)?.code == .registryMismatch && "\($0)".contains("staging")
            }
            // Its levels and fleet runs describe one migration set: another module would mark
            // that set's runs interrupted and overwrite its levels.
            await #expect { try await store.bind(database: here, schemaPrefix: "tenant_", migrationModule: "audit") } throws: {
                ($0 as? TenancyError)?.code == .registryMismatch && "\($0)".contains("\"tenant\"") && "\($0)".contains("audit")
            }
            #expect(try await registry.info() == bound)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aMissingRegistryIsNotCreatedUnlessAsked(store kind: StoreKind) async throws {
        switch kind {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("missing-\(UUID().uuidString)/registry.sqlite").path
            #expect { try TenantRegistry(path: path) } throws: { ($0 as? TenancyError)?.code == .registryNotFound && "\($0)".contains(path) }
            #expect(!FileManager.default.fileExists(atPath: path))
        case .postgres:
            try await TestPostgres.withPool { pool in
                let schema = TestPostgres.makeUniqueName(prefix: "reg")
                let registry = try TenantRegistry(pool: pool, schema: schema)
                await #expect { try await registry.tenants() } throws: { ($0 as? TenancyError)?.code == .registryNotFound && "\($0)".contains(schema) }
                #expect(try await pool.database(schema: try SQLIdentifier(schema)).schemaExists() == false)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aRegistryWrittenByANewerVersionIsRefused(store kind: StoreKind) async throws {
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("registry.sqlite").path
            _ = try TenantRegistry(path: path, creatingIfMissing: true)
            try await DatabaseQueue(path: path).write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9: from the future')") }
            #expect { try TenantRegistry(path: path) } throws: { ($0 as? TenancyError)?.code == .registryTooNew && "\($0)".contains("newer version") }
        case .postgres:
            try await TestPostgres.withPool { pool in
                let schema = try SQLIdentifier(TestPostgres.makeUniqueName(prefix: "reg"))
                _ = try await TenantRegistry(pool: pool, schema: schema.name, creatingIfMissing: true).info()
                try await pool.database(schema: schema).execute(
                    "INSERT INTO {{tables.schema_migrations}} (filename, checksum, module_name) VALUES ('002_future.sql', 'x', 'tenancy_registry')")
                await #expect { try await TenantRegistry(pool: pool, schema: schema.name).info() } throws: {
                    ($0 as? TenancyError)?.code == .registryTooNew && "\($0)".contains("002_future.sql")
                }
                try await pool.database(schema: schema).dropSchema(cascade: true)
            }
        }
    }

    @Test func aRegistryOfTheFirstFormatIsUpgradedKeepingItsTenants() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("registry.sqlite").path
        var firstFormat = DatabaseMigrator()
        firstFormat.registerMigration("v1: tenants, events, fleet ledger") { db in
            try db.execute(sql: "CREATE TABLE tenants (id INTEGER PRIMARY KEY, slug TEXT UNIQUE, display_name TEXT, schema_name TEXT NOT NULL UNIQUE, placement TEXT NOT NULL DEFAULT 'default', state TEXT NOT NULL, migration_file TEXT, migration_checksum TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT)")
            try db.execute(sql: "CREATE TABLE tenant_events (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants (id), at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT)")
            try db.execute(sql: "CREATE TABLE fleet_runs (id INTEGER PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, target_file TEXT, target_checksum TEXT, parameters TEXT, error TEXT)")
            try db.execute(sql: "CREATE TABLE fleet_run_items (run_id INTEGER NOT NULL REFERENCES fleet_runs (id), tenant_id INTEGER NOT NULL REFERENCES tenants (id), position INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, duration_ms INTEGER, files_applied TEXT, started_at REAL, finished_at REAL, PRIMARY KEY (run_id, tenant_id))")
            try db.execute(sql: "INSERT INTO tenants (slug, schema_name, state, created_at, updated_at) VALUES ('acme', 'tenant_1', 'active', 0, 0)")
            try db.execute(sql: "INSERT INTO tenant_events (tenant_id, at, kind) VALUES (1, 0, 'provisioned')")
        }
        try firstFormat.migrate(try DatabaseQueue(path: path))
        let registry = try TenantRegistry(path: path)
        let info = try await registry.info()
        #expect(info.formatVersion == 3 && info.id.count == 16)
        let acme = try #require(try await registry.tenant(slug: try TenantSlug("acme")))
        #expect(acme.state == .active && acme.generation == 1 && acme.placement == "default")
        #expect(try await registry.placements().map(\.name) == ["default"])
        #expect(try await registry.events(for: acme.slug).map(\.kind) == [.provisioned])
    }

    @Test func aFileRegistryIsPrivateUsesWALAndManyOpenersOfAFreshFileAllSucceed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("nested/registry.sqlite").path
        let registries = try await withThrowingTaskGroup(of: TenantRegistry.self) { group in
            for _ in 0..<6 { group.addTask { try TenantRegistry(path: path, creatingIfMissing: true) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(registries.count == 6)
        let store = try #require(registries[0].store as? SQLiteRegistryStore)
        #expect(try await store.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "wal")
        _ = try await registries[1].ready().insert(.new(slug: "shared", displayName: nil, schema: "tenant_x", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
        #expect(try await registries[2].tenant(slug: try TenantSlug("shared"))?.schema == "tenant_x")
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mode = try FileManager.default.attributesOfItem(atPath: path + suffix)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(path + suffix) has mode \(String(mode ?? 0, radix: 8))")
        }
    }

    @Test func anUnwritableLocationIsAClearError() {
        #expect { _ = try TenantRegistry(path: "/proc/tenancy/registry.sqlite", creatingIfMissing: true) } throws: {
            ($0 as? TenancyError)?.code == .registryFailed && "\($0)".contains("/proc/tenancy")
        }
    }

    @Test(arguments: [(StoreKind.sqlite, StoreKind.postgres), (.postgres, .sqlite)])
    func copyingARegistryKeepsEveryRowEventRunAndItsID(from source: StoreKind, to target: StoreKind) async throws {
        try await withRegistry(source) { from in
            let store = try await from.ready()
            let acme = try await store.insert(.new(slug: "acme", displayName: "Acme", schema: "tenant_a", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
            let active = try await store.update(acme, TenantChange(state: .active, level: level, event: .provisioned))
            _ = try await store.update(active, TenantChange(slug: try TenantSlug("acme-inc"), event: .renamed, detail: "acme → acme-inc"))
            _ = try await store.insert(.new(slug: nil, displayName: nil, schema: "tenant_s", placement: "default", state: .spare, level: level), event: .spareCreated, detail: nil)
            let run = try await store.beginFleetRun(tenantIDs: [acme.id], target: level, parameters: "{}")
            _ = try await store.startFleetItem(runID: run, tenantID: acme.id)
            try await store.finishFleetItem(runID: run, tenantID: acme.id, status: .succeeded, error: nil, durationMilliseconds: 5, filesApplied: ["002_b.sql"], level: level)
            try await store.finishFleetRun(id: run, status: .completed, error: nil)
            _ = try await store.bind(database: DatabaseIdentity(systemIdentifier: "1", databaseName: "app"), schemaPrefix: "tenant_", migrationModule: "tenant")

            try await withRegistry(target) { to in
                let report = try await from.copy(to: to)
                #expect(report == .init(tenants: 2, events: 5, fleetRuns: 1, fleetRunItems: 1))
                let copied = try await to.info()
                let original = try await from.info()
                #expect(copied.id == original.id && copied.database == original.database && copied.schemaPrefix == "tenant_")
                let tenant = try #require(try await to.tenant(slug: try TenantSlug("acme-inc")))
                #expect(tenant.id == acme.id && tenant.generation == 3 && tenant.migrationLevel == level)
                #expect(try await to.events(for: tenant.slug).map(\.kind) == [.migrated, .renamed, .provisioned, .provisioning])
                #expect(try await to.fleetRunItems(runID: run).map(\.filesApplied) == [["002_b.sql"]])
                #expect(try await to.fleetRun(id: run)?.counts.succeeded == 1)
                // The slug cool-down travels with the registry, and new rows get fresh ids.
                let toStore = try await to.ready()
                await #expect { try await toStore.insert(.new(slug: "acme", displayName: nil, schema: "tenant_b", placement: "default", state: .provisioning), event: .provisioning, detail: nil) } throws: {
                    ($0 as? TenancyError)?.code == .slugRecentlyReleased
                }
                let next = try await toStore.insert(.new(slug: "globex", displayName: nil, schema: "tenant_g", placement: "default", state: .provisioning), event: .provisioning, detail: nil)
                #expect(next.id > acme.id + 1)
                // A registry that is not empty is never overwritten.
                await #expect { try await from.copy(to: to) } throws: { ($0 as? TenancyError)?.code == .invalidArgument }
            }
        }
    }
}
