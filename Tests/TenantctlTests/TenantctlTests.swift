import Foundation
import SchemaDB
import SchemaDBTesting
import Testing

@Suite(integration, .timeLimit(.minutes(3)))
struct TenantctlTests {
    /// A release that fails on tenants holding an account with a negative balance.
    static let positiveBalances = "ALTER TABLE {{tables.accounts}} ADD CONSTRAINT balance_positive CHECK (balance >= 0);\n"

    func onboard(_ cli: CLIFixture, _ slugs: [String], negative: Set<String> = []) async throws {
        for slug in slugs {
            let created = try await cli.json("create", slug)
            #expect(created["status"] as? String == "active")
            if negative.contains(slug) {
                let schema = try SQLIdentifier(try #require(created["schema"] as? String))
                try await cli.pool.database(schema: schema).execute("INSERT INTO {{tables.accounts}} (email, balance) VALUES ('debtor@x.test', -5)")
            }
        }
    }

    func items(_ document: [String: Any]) -> [[String: Any]] {
        document["tenants"] as? [[String: Any]] ?? []
    }

    @Test(arguments: RegistryKind.allCases)
    func onboardingListingAndShowingPrintTheDocumentedJSON(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let settings = try await cli.json("init")
            #expect(settings["migration_files"] as? Int == 1)
            #expect(settings["schema_prefix"] as? String == cli.schemaPrefix)
            #expect((settings["database"] as? String)?.contains("://") == true)

            let created = try await cli.json("create", "acme", "--name", "Acme Inc")
            #expect(created["slug"] as? String == "acme")
            #expect(created["status"] as? String == "active")
            #expect(created["outcome"] as? String == "provisioned")
            #expect(created["applied_files"] as? [String] == ["001_accounts.sql"])
            #expect((created["schema"] as? String)?.hasPrefix(cli.schemaPrefix) == true)
            try await onboard(cli, ["beta"])

            let listed = try #require(try await cli.run("list", "--json").json() as? [[String: Any]])
            #expect(listed.map { $0["slug"] as? String } == ["acme", "beta"])
            #expect(listed.allSatisfy { $0["schema"] is String && $0["status"] as? String == "active" && $0["up_to_date"] as? Bool == true })

            let shown = try await cli.json("show", "acme")
            #expect(shown["display_name"] as? String == "Acme Inc")
            #expect((shown["migrations"] as? [[String: Any]])?.map { $0["filename"] as? String } == ["001_accounts.sql"])
            #expect((shown["events"] as? [[String: Any]])?.first?["kind"] as? String == "provisioned")

            let table = try await cli.run("list")
            #expect(table.status == 0)
            #expect(table.stdout.hasPrefix("SLUG"))
            #expect(table.stdout.contains("acme") && table.stderr.isEmpty)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func lifecycleCommandsAndDropRefusals(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await onboard(cli, ["acme"])
            let schema = try await cli.schema(of: "acme")
            #expect(try await cli.json("suspend", "acme")["status"] as? String == "suspended")
            #expect(try await cli.json("resume", "acme")["status"] as? String == "active")
            #expect(try await cli.json("rename", "acme", "acme-co")["schema"] as? String == schema.name)

            let refused = try await cli.run("drop", "acme-co")
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("--yes"))
            #expect(try await cli.schemas() == [schema.name])

            #expect(try await cli.json("drop", "acme-co", "--yes")["status"] as? String == "deleted")
            #expect(try await cli.schemas().isEmpty)
            // Run again (after an interruption, say), a finished drop just reports the tenant.
            #expect(try await cli.json("drop", "acme-co", "--yes")["status"] as? String == "deleted")
            #expect(try await cli.run("show", "nobody").status == 1)
        }
    }

    @Test(arguments: ["Robert'); DROP SCHEMA public CASCADE;--", "ÄCME", "a", String(repeating: "x", count: 51), "public", "pg-catalog", "acme-"])
    func hostileSlugsExitTwoAndWriteNothing(slug: String) async throws {
        try await CLIFixture.run(initialized: false) { cli in
            let result = try await cli.run("create", slug, "--json")
            #expect(result.status == 2)
            #expect(result.stderr.hasPrefix("error: invalid tenant slug"))
            #expect(result.stderr.split(separator: "\n").count == 1)
            #expect((try result.object()["error"] as? [String: Any])?["code"] as? String == "invalid_slug")
            #expect(!FileManager.default.fileExists(atPath: cli.registryURL.path))
            #expect(try await cli.schemas().isEmpty)
        }
    }

    /// Cases seen to fail in the field: each is refused in one line, exits 2 and writes nothing.
    @Test(arguments: RegistryKind.allCases)
    func hostileFilesPrefixesAndURLsAreRefusedAndChangeNothing(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await onboard(cli, ["acme"])
            let before = try await cli.schemas()

            try cli.writeMigration("002_sneaky.sql", "ALTER TABLE {{tables.accounts}} ADD COLUMN sneaky int;\nROLLBACK;\nSELECT 1;\n")
            let rolledBack = try await cli.run("migrate", "--all")
            #expect(rolledBack.status == 2)
            #expect(rolledBack.stderr.contains("002_sneaky.sql") && rolledBack.stderr.contains("line 2 has ROLLBACK"))
            #expect(try await cli.json("show", "acme")["migration_level"] as? String != "002_sneaky.sql")
            try FileManager.default.removeItem(at: cli.migrationsURL.appendingPathComponent("002_sneaky.sql"))

            try cli.writeMigration("002_commit.sql", "CREATE TABLE {{tables.extra}} (id int);\nCOMMIT;\n")
            let committed = try await cli.run("create", "globex")
            #expect(committed.status == 2)
            #expect(committed.stderr.split(separator: "\n").count == 1)
            #expect(try await cli.schemas() == before)
            try FileManager.default.removeItem(at: cli.migrationsURL.appendingPathComponent("002_commit.sql"))

            let reserved = try await cli.run("create", "globex", "--schema-prefix", "pg_toast")
            #expect(reserved.status == 2)
            #expect(reserved.stderr.contains("reserves schema names starting with pg_"))
            #expect(try await cli.run("show", "globex").status == 1)

            for url in ["postgres://u@127.0.0.1/db?passwd=hunter2", "postgres://u:hun/ter2@127.0.0.1/db", "postgres://u:hun?ter2@127.0.0.1/db", "mysql://u:hunter2@h/d"] {
                let refused = try await cli.run("create", "zed", "--database-url", url)
                #expect(refused.status == 2)
                #expect(!(refused.stdout + refused.stderr).contains("ter2"))
                let asRegistry = try await cli.run("list", "--registry", url)
                #expect(asRegistry.status == 2)
                #expect(!(asRegistry.stdout + asRegistry.stderr).contains("ter2"))
                let asCopyTarget = try await cli.run("registry", "copy", "--to", url)
                #expect(asCopyTarget.status == 2)
                #expect(!(asCopyTarget.stdout + asCopyTarget.stderr).contains("ter2"))
            }

            let negative = try await cli.run("list", "--limit", "-5")
            #expect(negative.status == 2 && negative.stderr.contains("--limit must be at least 1"))

            let escaped = try await cli.run("create", "initech", "--name", "evil\u{1B}]0;owned\u{07}")
            #expect(escaped.status == 0)
            let listed = try await cli.run("list")
            #expect(!listed.stdout.contains("\u{1B}") && listed.stdout.contains("evil\\u{1B}]0;owned\\u{7}"))
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func badSettingsGetOneLineErrorsWithoutPasswords(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let badURL = try await cli.run("init", "--database-url", "mysql://root:hunter2@db/x")
            #expect(badURL.status == 2)
            #expect(!badURL.stderr.contains("hunter2"))

            let unreachable = try await cli.run("create", "acme", "--database-url", "postgres://app:hunter2@127.0.0.1:1/app")
            #expect(unreachable.status == 1)
            #expect(unreachable.stderr.hasPrefix("error: "))
            #expect(unreachable.stderr.split(separator: "\n").count == 1)
            #expect(unreachable.stderr.contains("127.0.0.1:1"))
            #expect(!unreachable.stderr.contains("hunter2"))

            try cli.writeMigration("002_empty.sql", "-- nothing but a comment\n")
            let broken = try await cli.run("create", "acme")
            #expect(broken.status == 2)
            #expect(broken.stderr.contains("002_empty.sql"))
            #expect(try await cli.schemas().isEmpty)

            let prefix = try await cli.run("create", "acme", "--schema-prefix", "x\"; DROP SCHEMA public; --")
            #expect(prefix.status == 2)
            #expect(prefix.stderr.contains("schema prefix"))

            let usage = try await cli.run("migrate", "--all", "--concurrency", "0")
            #expect(usage.status == 2)
            #expect(try await cli.run("migrate").status == 2)
            #expect(try await cli.run("frobnicate").status == 2)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func aFleetRunWhereSomeTenantsFailExitsThreeAndResumesAfterTheFix(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let slugs = (1...12).map { "t\($0)" }
            try await onboard(cli, slugs, negative: ["t4", "t9"])
            try cli.writeMigration("002_positive.sql", Self.positiveBalances)

            let plan = try await cli.json("migrate", "--all", "--dry-run")
            #expect(plan["behind"] as? Int == 12)
            #expect(items(plan).allSatisfy { $0["pending"] as? [String] == ["002_positive.sql"] })

            let result = try await cli.run("migrate", "--all", "--concurrency", "3", "--json")
            #expect(result.status == 3)
            let run = try result.object()
            #expect(run["total"] as? Int == 12)
            #expect(run["succeeded"] as? Int == 10)
            #expect(run["failed"] as? Int == 2)
            #expect(run["skipped"] as? Int == 0)
            let failed = items(run).filter { $0["status"] as? String == "failed" }
            #expect(failed.map { $0["slug"] as? String } == ["t4", "t9"])
            #expect(failed.allSatisfy { ($0["error"] as? String)?.contains("balance_positive") == true && ($0["applied"] as? [String])?.isEmpty == true })
            #expect(items(run).filter { $0["status"] as? String == "succeeded" }.allSatisfy { $0["applied"] as? [String] == ["002_positive.sql"] && $0["error"] is NSNull })
            #expect(result.stderr.contains("--resume \(try #require(run["run_id"] as? Int))"))

            let status = try await cli.json("status")
            #expect(status["behind_tenants"] as? [String] == ["t4", "t9"])
            #expect((status["last_run_failures"] as? [[String: Any]])?.count == 2)

            for slug in ["t4", "t9"] {
                try await cli.pool.database(schema: try await cli.schema(of: slug)).execute("UPDATE {{tables.accounts}} SET balance = 0")
            }
            let runID = try #require(run["run_id"] as? Int)
            let resumed = try await cli.json("migrate", "--resume", "\(runID)")
            #expect(resumed["run_id"] as? Int == runID)
            #expect(resumed["status"] as? String == "completed")
            #expect(resumed["succeeded"] as? Int == 12)
            for item in items(resumed) {
                #expect(item["attempts"] as? Int == (["t4", "t9"].contains(item["slug"] as? String ?? "") ? 2 : 1))
            }

            let ledger = try #require(try await cli.run("runs", "--json").json() as? [[String: Any]])
            #expect(ledger.map { $0["status"] as? String } == ["completed"])
            let shown = try await cli.json("runs", "show", "\(runID)")
            #expect(items(shown).count == 12)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func maxFailuresAndCanaryAbortTheRunWithExitThree(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await onboard(cli, ["t1", "t2", "t3", "t4", "t5"], negative: ["t1", "t3"])
            try cli.writeMigration("002_positive.sql", Self.positiveBalances)

            let canary = try await cli.run("migrate", "--all", "--canary", "2", "--json")
            #expect(canary.status == 3)
            let canaryRun = try canary.object()
            #expect(canaryRun["status"] as? String == "aborted")
            #expect(items(canaryRun).map { $0["status"] as? String } == ["failed", "pending", "pending", "pending", "pending"])

            let capped = try await cli.run("migrate", "--all", "--concurrency", "1", "--max-failures", "1", "--json")
            #expect(capped.status == 3)
            let cappedRun = try capped.object()
            #expect(cappedRun["status"] as? String == "aborted")
            #expect(items(cappedRun).map { $0["status"] as? String } == ["failed", "succeeded", "failed", "pending", "pending"])
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func aKilledRunIsResumedWithoutRedoingFinishedTenants(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let slugs = (1...6).map { "t\($0)" }
            try await onboard(cli, slugs)
            try cli.writeMigration("002_slow.sql", "ALTER TABLE {{tables.accounts}} ADD COLUMN note text;\nSELECT pg_sleep(0.4);\n")
            let running = try cli.start("migrate", "--all", "--concurrency", "1")
            var runID: Int?
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(100))
                let runs = try await cli.run("runs", "--json").json() as? [[String: Any]]
                if let run = runs?.first, (run["succeeded"] as? Int ?? 0) >= 2 {
                    runID = run["run_id"] as? Int
                    break
                }
            }
            let id = try #require(runID, "the run never got going")
            running.signal(SIGKILL)
            #expect(await running.result().status != 0)

            let resumed = try await cli.json("migrate", "--resume", "\(id)")
            #expect(resumed["status"] as? String == "completed")
            // The tenant in flight when the process died may have committed before its item
            // was recorded: the resume then finds nothing to do for it.
            let (succeeded, skipped) = (resumed["succeeded"] as? Int ?? 0, resumed["skipped"] as? Int ?? 0)
            #expect(succeeded + skipped == 6 && skipped <= 1, "\(items(resumed))")
            let attempts = items(resumed).compactMap { $0["attempts"] as? Int }
            #expect(attempts.prefix(2) == [1, 1])
            #expect(attempts.filter { $0 == 2 }.count <= 1)
            for slug in slugs {
                let schema = try await cli.schema(of: slug)
                let db = cli.pool.database(schema: schema)
                #expect(try await db.fetchValue(
                    "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'note'", schema.name, as: Int.self) == 1)
                #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.schema_migrations}}", as: Int.self) == 2)
            }
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func sigintFinishesTheTenantsInFlightAndPrintsTheRunToResume(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            // Eight tenants of 0.8 s each: some are still pending however slow the polling below is.
            try await onboard(cli, (1...8).map { "t\($0)" })
            try cli.writeMigration("002_slow.sql", "ALTER TABLE {{tables.accounts}} ADD COLUMN note text;\nSELECT pg_sleep(0.8);\n")
            let running = try cli.start("migrate", "--all", "--concurrency", "1", "--json")
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(100))
                if let run = (try? await cli.run("runs", "--json").json() as? [[String: Any]])?.first, run["running"] as? Int == 1 { break }
            }
            running.signal(SIGINT)
            let result = await running.result()
            #expect(result.status == 130)
            let run = try result.object()
            #expect(run["status"] as? String == "interrupted")
            #expect((run["pending"] as? Int ?? 0) > 0)
            #expect(run["running"] as? Int == 0)
            #expect(result.stderr.contains("--resume \(run["run_id"] as? Int ?? -1)"))
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func aSecondConcurrentFleetRunExitsFour(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await onboard(cli, ["t1", "t2", "t3"])
            try cli.writeMigration("002_slow.sql", "SELECT pg_sleep(1.5);\n")
            let first = try cli.start("migrate", "--all", "--concurrency", "1")
            for _ in 0..<100 {
                try await Task.sleep(for: .milliseconds(100))
                if let run = (try? await cli.run("runs", "--json").json() as? [[String: Any]])?.first, run["status"] as? String == "running" { break }
            }
            let second = try await cli.run("migrate", "--all")
            #expect(second.status == 4)
            #expect(second.stderr.contains("another fleet migration is running"))
            #expect(await first.result().status == 0)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func doctorFindsAnOrphanSchemaAndATenantWhoseSchemaWasDropped(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await onboard(cli, ["acme", "beta"])
            let orphan = try SQLIdentifier(cli.schemaPrefix + "orphan")
            try await cli.pool.database(schema: orphan).createSchemaIfNeeded()
            let beta = try await cli.schema(of: "beta")
            try await cli.pool.database(schema: beta).dropSchema(cascade: true)

            let result = try await cli.run("doctor", "--json")
            #expect(result.status == 1)
            let findings = try #require(try result.object()["findings"] as? [[String: Any]])
            let kinds = Set(findings.map { "\($0["kind"] as? String ?? "") \($0["schema"] as? String ?? "")" })
            #expect(kinds == ["orphan_schema \(orphan.name)", "missing_schema \(beta.name)"])
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func theRepositoryExampleMigrationsProvisionATenantThatServesQueries(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let examples = repository.appendingPathComponent("tenant-migrations").path
            let created = try await cli.json("create", "acme", "--migrations", examples)
            #expect((created["applied_files"] as? [String])?.count == 5)
            let db = cli.pool.database(schema: try SQLIdentifier(try #require(created["schema"] as? String)))
            let account = try await db.insertReturningID("INSERT INTO {{tables.accounts}} (email, name, plan) VALUES ($1, $2, 'team')", "ada@acme.test", "Ada", as: Int.self)
            let invoice = try await db.insertReturningID("INSERT INTO {{tables.invoices}} (account_id, number) VALUES ($1, 'A-1')", account, as: Int.self)
            try await db.execute("INSERT INTO {{tables.invoice_lines}} VALUES ($1, 1, 'seats', 3, 1500), ($1, 2, 'support', 1, 500)", invoice)
            #expect(try await db.fetchValue("SELECT total_cents FROM {{tables.open_invoices}} WHERE number = 'A-1'", as: Int.self) == 5000)
        }
    }

    @Test(arguments: RegistryKind.allCases)
    func sparesAreFilledAndClaimedAndNewMigrationsAreNumbered(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            let filled = try #require(try await cli.run("spares", "fill", "2", "--json").json() as? [[String: Any]])
            #expect(filled.count == 2)
            let created = try await cli.json("create", "acme")
            #expect(created["outcome"] as? String == "claimed_spare")
            #expect(created["schema"] as? String == filled.first?["schema"] as? String)
            #expect((try await cli.run("spares", "list", "--json").json() as? [[String: Any]])?.count == 1)

            let file = try await cli.json("new-migration", "Add invoices!")
            #expect(file["file"] as? String == "002_add_invoices.sql")
            #expect(FileManager.default.fileExists(atPath: cli.migrationsURL.appendingPathComponent("002_add_invoices.sql").path))
        }
    }
}
