import Foundation
import SchemaDB
import SchemaDBTesting
import Testing

/// The registry from the operator's side: where it is looked for, what it describes, and
/// moving it between SQLite and PostgreSQL.
@Suite(integration, .timeLimit(.minutes(3)))
struct RegistryCommandTests {
    static let commands: [[String]] = [
        ["list"], ["status"], ["migrate", "--all"], ["spares", "list"], ["runs"], ["suspend", "acme"], ["show", "acme"], ["doctor"], ["create", "acme"],
    ]

    @Test(arguments: RegistryKind.allCases)
    func commandsWhereThereIsNoRegistryNameWhereTheyLookedAndCreateNothing(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry, initialized: false) { cli in
            for command in Self.commands {
                let result = try await cli.run(arguments: command)
                #expect(result.status == 2, "\(command) exited \(result.status): \(result.stderr)")
                #expect(result.stderr.hasPrefix("error: there is no tenant registry"), "\(command): \(result.stderr)")
                #expect(result.stderr.contains(registry == .sqlite ? ".tenancy/registry.sqlite" : cli.registrySchema))
                #expect(result.stderr.contains("tenantctl init"))
            }
            #expect(!FileManager.default.fileExists(atPath: cli.registryURL.path))
            #expect(try await cli.pool.database(schema: try SQLIdentifier(cli.registrySchema)).schemaExists() == false)
            #expect(try await cli.schemas().isEmpty)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func initRecordsTheDatabaseAndPrefixAndTheFileIsPrivate(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let shown = try await cli.json("registry", "show")
            #expect(shown["schema_prefix"] as? String == cli.schemaPrefix)
            #expect((shown["database"] as? String)?.contains("database \"\(try TestPostgres.makeTestConfiguration().effectiveDatabase)\"") == true)
            #expect((shown["id"] as? String)?.count == 16)
            #expect(shown["notification_channel"] as? String == "tenancy_" + (shown["id"] as? String ?? ""))
            if registry == .sqlite {
                let mode = try FileManager.default.attributesOfItem(atPath: cli.registryURL.path)[.posixPermissions] as? Int
                #expect(mode == 0o600)
            }
        }
    }

    /// An init that cannot create its registry (here: nothing listens at the database URL)
    /// leaves no registry and no migrations directory behind.
    @Test func anInitThatFailsLeavesNothingBehind() async throws {
        try await CLIFixture.run(.sqlite, initialized: false) { cli in
            let migrations = cli.directory.appendingPathComponent("new-migrations")
            let result = try await cli.run("init", "--migrations", migrations.path, "--database-url", "postgres://postgres@127.0.0.1:1/postgres")
            #expect(result.status != 0)
            #expect(result.stderr.hasPrefix("error: "), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: migrations.path))
            #expect(!FileManager.default.fileExists(atPath: cli.registryURL.path))
            #expect(!FileManager.default.fileExists(atPath: cli.registryURL.deletingLastPathComponent().path))
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func lifecycleCommandsWorkWithoutAUsableMigrationSet(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            for slug in ["acme", "beta", "gamma"] { _ = try await cli.json("create", slug) }
            let stashed = cli.directory.appendingPathComponent("stashed-migrations")
            try FileManager.default.moveItem(at: cli.migrationsURL, to: stashed)
            try await expectLifecycleWorks(cli, slug: "acme")

            try FileManager.default.moveItem(at: stashed, to: cli.migrationsURL)
            try cli.writeMigration("002_broken.sql", "-- only a comment\n")
            try await expectLifecycleWorks(cli, slug: "beta")
            // What needs the set says so, naming the file.
            let create = try await cli.run("create", "delta")
            #expect(create.status == 2 && create.stderr.contains("002_broken.sql"))
        }
    }

    private func expectLifecycleWorks(_ cli: CLIFixture, slug: String) async throws {
        for command in [["suspend", slug], ["resume", slug], ["show", slug], ["list"], ["rename", slug, slug + "-co"], ["drop", slug + "-co", "--yes"]] {
            let result = try await cli.run(arguments: command)
            #expect(result.status == 0, "\(command) exited \(result.status): \(result.stderr)")
        }
    }

    @Test func aRegistryIsCopiedToPostgreSQLAndBackWithItsLedgerAndID() async throws {
        try await CLIFixture.run(.sqlite) { cli in
            for slug in ["acme", "beta"] { _ = try await cli.json("create", slug) }
            #expect(try await cli.run("spares", "fill", "1").status == 0)
            try cli.writeMigration("002_notes.sql", "CREATE TABLE {{tables.notes}} (id int);\n")
            _ = try await cli.json("migrate", "--all")
            _ = try await cli.json("rename", "beta", "beta-co")
            let original = try await cli.json("registry", "show")
            // The fixture drops its registry schema afterwards; this SQLite test copies into it.
            let copySchema = cli.registrySchema

            let copied = try await cli.json("registry", "copy", "--to", cli.databaseURL, "--to-schema", copySchema)
            #expect(copied["tenants"] as? Int == 3)
            #expect(copied["fleet_runs"] as? Int == 1 && copied["fleet_run_items"] as? Int == 3)
            let inPostgres = ["--registry", cli.databaseURL, "--registry-schema", copySchema]
            let listed = try #require(try await cli.run(arguments: ["list", "--json"] + inPostgres).json() as? [[String: Any]])
            #expect(listed.map { $0["slug"] as? String } == ["acme", "beta-co"])
            #expect(try await cli.json(arguments: ["registry", "show"] + inPostgres)["id"] as? String == original["id"] as? String)
            let runs = try #require(try await cli.run(arguments: ["runs", "--json"] + inPostgres).json() as? [[String: Any]])
            #expect(runs.map { $0["succeeded"] as? Int } == [3])
            // The copy is a working registry: the same fleet is served from it.
            let created = try await cli.json(arguments: ["create", "gamma"] + inPostgres)
            #expect(created["outcome"] as? String == "claimed_spare")

            let back = cli.directory.appendingPathComponent("back.sqlite").path
            _ = try await cli.json(arguments: ["registry", "copy", "--to", back] + inPostgres)
            let roundTrip = try #require(try await cli.run("list", "--json", "--registry", back).json() as? [[String: Any]])
            #expect(roundTrip.map { $0["slug"] as? String } == ["acme", "beta-co", "gamma"])
            // A registry that holds rows is never written over.
            let again = try await cli.run(arguments: ["registry", "copy", "--to", back] + inPostgres)
            #expect(again.status == 2 && again.stderr.contains("not empty"))
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func doctorWithAnotherPrefixOrDatabaseIsRefusedAndRepairsNothing(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            #expect(try await cli.run("spares", "fill", "2").status == 0)
            let otherPrefix = try await cli.run("doctor", "--fix", "--schema-prefix", "other_")
            #expect(otherPrefix.status == 2)
            #expect(otherPrefix.stderr.contains("schema prefix \"\(cli.schemaPrefix)\""))
            try await TestPostgres.withTemporaryDatabase(pool: cli.pool) { config in
                let otherDatabase = try await cli.run("doctor", "--fix", "--database-url", config.url(maskingPassword: false))
                #expect(otherDatabase.status == 2)
                #expect(otherDatabase.stderr.contains(config.effectiveDatabase))
            }
            #expect((try await cli.run("spares", "list", "--json").json() as? [[String: Any]])?.count == 2)
            #expect(try await cli.schemas().count == 2)
        }
    }
}
