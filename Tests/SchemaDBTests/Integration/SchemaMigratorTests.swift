import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Synchronization
import Testing

@Suite(integration, .timeLimit(.minutes(2)))
struct SchemaMigratorTests {
    static let initial = [
        "001_users.sql": """
            -- Users of the tenant.
            CREATE TABLE {{tables.users}} (
                id serial PRIMARY KEY,
                email text NOT NULL UNIQUE,
                note text DEFAULT 'uses {{tables.users}}; literally'
            );
            CREATE INDEX users_email_lower ON {{tables.users}} (lower(email));
            """,
        "002_orders.sql": """
            CREATE TABLE {{tables.orders}} (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES {{tables.users}} (id));
            CREATE FUNCTION {{schema}}.order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM {{tables.orders}} $$;
            """,
    ]

    func migrator(_ db: SchemaDatabase, _ directory: MigrationDirectory, module: String = "app", configure: (inout SchemaMigrator.Options) -> Void = { _ in }) throws -> SchemaMigrator {
        var options = SchemaMigrator.Options()
        configure(&options)
        return try SchemaMigrator(database: db, migrations: try directory.load(), module: module, options: options)
    }

    @Test func applyingCreatesTablesAndRecordsEveryFileOnce() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            let first = try await migrator(db, directory).apply()
            #expect(first.applied.map(\.filename) == ["001_users.sql", "002_orders.sql"])
            for table in ["users", "orders", "schema_migrations"] { #expect(try await db.tableExists(table)) }
            #expect(try await db.fetchValue("SELECT {{schema}}.order_count()", as: Int.self) == 0)
            #expect(try await db.fetchValue("SELECT column_default FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'users' AND column_name = 'note'", db.schema!.name, as: String.self)?.contains("{{tables.users}}") == true)

            let again = try await migrator(db, directory).apply()
            #expect(again.wasUpToDate)
            #expect(again.alreadyApplied == 2)
            #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.schema_migrations}}", as: Int.self) == 2)

            try directory.write("003_orders_total.sql", "ALTER TABLE {{tables.orders}} ADD COLUMN total numeric NOT NULL DEFAULT 0;")
            let third = try await migrator(db, directory).apply()
            #expect(third.applied.map(\.filename) == ["003_orders_total.sql"])
            let history = try await migrator(db, directory).history()
            #expect(history.map(\.filename) == ["003_orders_total.sql", "002_orders.sql", "001_users.sql"])
            #expect(history.allSatisfy { $0.module == "app" && $0.appliedBy == "postgres" && ($0.executionTimeMilliseconds ?? 0) >= 1 })
            let status = try await migrator(db, directory).status()
            #expect(status.isUpToDate && status.applied.count == 3)
        }
    }

    @Test func aMixedCaseSchemaMigrates() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await TestPostgres.withPool { pool in
            let db = try pool.database(schema: "Tenant_" + String(UInt32.random(in: 0 ... .max), radix: 16))
            do {
                try await migrator(db, directory).apply()
                #expect(try await db.tableExists("users"))
                #expect(try await migrator(db, directory).apply().wasUpToDate)
            } catch {
                try? await db.dropSchema(cascade: true)
                throw error
            }
            try await db.dropSchema(cascade: true)
        }
    }

    @Test func aFailingFileLeavesTheSchemaAtItsPreviousVersion() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await migrator(db, directory).apply()
            try directory.write("003_ok.sql", "CREATE TABLE {{tables.invoices}} (id int);")
            try directory.write("004_broken.sql", "ALTER TABLE {{tables.invoices}} ADD COLUMN n int;\nALTER TABLE {{tables.nope}} ADD COLUMN x int;")
            await #expect {
                try await migrator(db, directory).apply()
            } throws: { error in
                let error = error as? SchemaDBError
                return error?.code == .migrationFailed && error?.migrationFile == "004_broken.sql" && error?.sqlState == "42P01"
                    && error?.description.contains("statement 2 of 2") == true
            }
            #expect(try await !db.tableExists("invoices"))
            #expect(try await migrator(db, directory).status().pending == ["003_ok.sql", "004_broken.sql"])

            // One transaction per file keeps the files before the failure.
            await #expect(throws: SchemaDBError.self) {
                try await migrator(db, directory, configure: { $0.transactionMode = .perFile }).apply()
            }
            #expect(try await db.tableExists("invoices"))
            #expect(try await migrator(db, directory).status().pending == ["004_broken.sql"])
        }
    }

    @Test func aChangedAppliedFileIsRefusedBeforeAnythingRuns() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await migrator(db, directory).apply()
            try directory.write("001_users.sql", Self.initial["001_users.sql"]! + "\n-- edited")
            try directory.write("003_more.sql", "CREATE TABLE {{tables.more}} (id int);")
            await #expect {
                try await migrator(db, directory).apply()
            } throws: { error in
                let error = error as? SchemaDBError
                return error?.code == .migrationChecksumMismatch && error?.migrationFile == "001_users.sql"
                    && error?.description.contains("checksum") == true
            }
            #expect(try await !db.tableExists("more"))
            #expect(try await migrator(db, directory).status().changed.map(\.filename) == ["001_users.sql"])
        }
    }

    @Test func aNewFileSortingBeforeAppliedOnesIsRefusedUnlessAllowed() async throws {
        let directory = try MigrationDirectory(["001_a.sql": "CREATE TABLE {{tables.a}} (id int);", "003_c.sql": "CREATE TABLE {{tables.c}} (id int);"])
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await migrator(db, directory).apply()
            try directory.write("002_b.sql", "CREATE TABLE {{tables.b}} (id int);")
            await #expect {
                try await migrator(db, directory).apply()
            } throws: { ($0 as? SchemaDBError)?.code == .migrationOutOfOrder && ($0 as? SchemaDBError)?.migrationFile == "002_b.sql" }
            #expect(try await !db.tableExists("b"))
            let report = try await migrator(db, directory, configure: { $0.allowsOutOfOrder = true }).apply()
            #expect(report.applied.map(\.filename) == ["002_b.sql"])
        }
    }

    @Test func anAppliedFileThatDisappearedIsRefusedUnlessAllowed() async throws {
        let directory = try MigrationDirectory(["001_a.sql": "CREATE TABLE {{tables.a}} (id int);", "002_b.sql": "CREATE TABLE {{tables.b}} (id int);"])
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await migrator(db, directory).apply()
            try FileManager.default.removeItem(at: directory.url.appendingPathComponent("002_b.sql"))
            try directory.write("003_c.sql", "CREATE TABLE {{tables.c}} (id int);")
            await #expect {
                try await migrator(db, directory).apply()
            } throws: { ($0 as? SchemaDBError)?.code == .migrationFileMissing }
            #expect(try await migrator(db, directory).status().missing == ["002_b.sql"])
            #expect(try await migrator(db, directory, configure: { $0.allowsMissingFiles = true }).apply().applied.count == 1)
        }
    }

    @Test func theDryRunPlanChangesNothing() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            let plan = try await migrator(db, directory).pendingFiles()
            #expect(plan.map(\.filename) == ["001_users.sql", "002_orders.sql"])
            #expect(try await !db.tableExists("schema_migrations"))
            #expect(try await !db.tableExists("users"))
        }
    }

    @Test func twoModulesKeepTheirSetsApartInOneSchema() async throws {
        let app = try MigrationDirectory(["001_init.sql": "CREATE TABLE {{tables.app_things}} (id int);"])
        let audit = try MigrationDirectory(["001_init.sql": "CREATE TABLE {{tables.audit_log}} (id int);"])
        defer { app.remove(); audit.remove() }
        try await withTestSchema { _, db in
            let appReport = try await migrator(db, app, module: "app").apply()
            let auditReport = try await migrator(db, audit, module: "audit").apply()
            #expect(appReport.applied.count == 1 && auditReport.applied.count == 1)
            for table in ["app_things", "audit_log"] { #expect(try await db.tableExists(table)) }
            let again = try await migrator(db, app, module: "app").apply()
            #expect(again.wasUpToDate)
        }
    }

    @Test func twoConcurrentRunnersOnOneSchemaApplyOnce() async throws {
        let directory = try MigrationDirectory(Self.initial.merging(["003_slow.sql": "SELECT pg_sleep(0.3);"]) { $1 })
        defer { directory.remove() }
        try await withTestSchema { _, db in
            let reports = try await withThrowingTaskGroup(of: MigrationReport.self) { group in
                for _ in 0..<2 { group.addTask { try await migrator(db, directory).apply() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(reports.map(\.applied.count).sorted() == [0, 3])
            #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.schema_migrations}}", as: Int.self) == 3)
        }
    }

    @Test func aHeldLockTimesOutWithAClearErrorAndOtherSchemasDoNotWait() async throws {
        // The slow migration waits for a lock this test holds, so it is still running for as
        // long as the test needs, however loaded the machine is.
        let gate = Int64.random(in: 1 ... .max)
        let slow = try MigrationDirectory(["001_slow.sql": "CREATE TABLE {{tables.t}} (id int);\nSELECT pg_advisory_xact_lock(\(gate));"])
        let fast = try MigrationDirectory(["001_fast.sql": "CREATE TABLE {{tables.t}} (id int);"])
        defer { slow.remove(); fast.remove() }
        try await withTestSchema { pool, busy in
            try await TestPostgres.withTemporarySchema(pool: pool) { other in
                try await pool.database(schema: nil).withConnection { holder in
                    _ = try await holder.fetchAll("SELECT pg_advisory_lock($1)", gate)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        let slowFinished = Atomic<Bool>(false)
                        group.addTask {
                            try await migrator(busy, slow).apply()
                            slowFinished.store(true, ordering: .relaxed)
                        }
                        while try await holder.fetchValue(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::bigint & 4294967295)::oid", gate, as: Int.self) == 0 {
                            try await Task.sleep(for: .milliseconds(20))
                        }
                        // Same schema and module: waits, then gives up with a lock timeout.
                        await #expect {
                            try await migrator(busy, fast, configure: { $0.lockTimeout = .milliseconds(300) }).apply()
                        } throws: { error in
                            let error = error as? SchemaDBError
                            return error?.code == .migrationLockTimeout && error?.description.contains("app") == true
                        }
                        // Another schema migrates at once while the first is still busy.
                        try await migrator(other, fast, configure: { $0.lockTimeout = .milliseconds(300) }).apply()
                        #expect(slowFinished.load(ordering: .relaxed) == false)
                        _ = try await holder.fetchAll("SELECT pg_advisory_unlock($1)", gate)
                        try await group.waitForAll()
                        let finished = slowFinished.load(ordering: .relaxed)
                        #expect(finished)
                    }
                }
            }
        }
    }

    @Test func aTableLockHeldByAnotherSessionTimesOutTheMigrationInsteadOfStallingIt() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await migrator(db, directory).apply()
            try directory.write("003_orders_total.sql", "ALTER TABLE {{tables.orders}} ADD COLUMN total numeric NOT NULL DEFAULT 0;")
            try await db.withTransaction { holder in
                // An application transaction reading the table holds a lock the ALTER must wait for.
                _ = try await holder.fetchAll("SELECT * FROM {{tables.orders}}")
                let start = ContinuousClock.now
                await #expect {
                    try await migrator(db, directory, configure: { $0.lockTimeout = .milliseconds(300) }).apply()
                } throws: { error in
                    let error = error as? SchemaDBError
                    return error?.code == .migrationLockTimeout && error?.migrationFile == "003_orders_total.sql"
                        && error?.description.contains("table lock") == true
                }
                #expect(ContinuousClock.now - start < .seconds(30))
            }
            #expect(try await migrator(db, directory).pendingFiles().map(\.filename) == ["003_orders_total.sql"])
            try await migrator(db, directory).apply()
        }
    }

    /// A migration's session state (`SET search_path`, `SET ROLE`, `set_config(…, false)`, a
    /// session lock) never reaches the next user of its pooled connection.
    @Test(arguments: [
        "SET search_path TO {{schema}};",
        "SET ROLE schemadb_test_admin;",
        "SELECT set_config('work_mem', '1MB', false);",
        "SELECT pg_advisory_lock(4242);",
        "CREATE TEMPORARY TABLE scratch (id int);",
    ])
    func noSessionStateOfAMigrationOutlivesItsConnectionLease(setting: String) async throws {
        let directory = try MigrationDirectory(["001_accounts.sql": setting + "\nCREATE TABLE {{tables.accounts}} (id int);\nINSERT INTO {{tables.accounts}} VALUES (1);"])
        defer { directory.remove() }
        for mode in [SchemaMigrator.TransactionMode.singleTransaction, .perFile] {
            // One connection: whatever the migration's session kept, the next query would see.
            try await withTestSchema(configure: { $0.maximumConnections = 1 }) { pool, db in
                _ = try await db.fetchAll(
                    "DO $$ BEGIN CREATE ROLE schemadb_test_admin SUPERUSER NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
                try await migrator(db, directory, configure: { $0.transactionMode = mode }).apply()
                let other = pool.database(schema: nil)
                #expect(try await other.fetchValue("SELECT current_setting('search_path')", as: String.self) == "\"$user\", public")
                #expect(try await other.fetchValue("SELECT current_user = session_user", as: Bool.self) == true)
                #expect(try await other.fetchValue("SELECT current_setting('work_mem')", as: String.self) != "1MB")
                #expect(try await other.fetchValue("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'", as: Int.self) == 0)
                #expect(try await other.fetchValue("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()", as: Int.self) == 0)
                // An unqualified name no longer resolves into the migrated schema.
                await #expect(throws: SchemaDBError.self) { try await other.fetchAll("SELECT * FROM accounts") }
                #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 1)
            }
        }
    }

    @Test func aScriptRunOnItsOwnLeavesTheSchemaAsApplyWould() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            try await db.dropSchema(cascade: true)
            let all = try directory.load().files
            let script = try migrator(db, directory).script(applying: all, creatingSchema: true)
            #expect(script.hasPrefix("BEGIN;\nCREATE SCHEMA \(db.schema!.quoted);\n"))
            #expect(script.hasSuffix("COMMIT;\n"))
            try await runScript(script, on: db)
            let status = try await migrator(db, directory).status()
            #expect(status.isUpToDate && status.applied.count == 2)
            #expect(try await db.fetchValue("SELECT {{schema}}.order_count()", as: Int.self) == 0)

            try directory.write("003_orders_total.sql", "ALTER TABLE {{tables.orders}} ADD COLUMN total numeric NOT NULL DEFAULT 0;")
            let pending = try await migrator(db, directory).pendingFiles()
            let next = try migrator(db, directory).script(applying: pending, creatingSchema: false)
            #expect(!next.contains("CREATE"))
            try await runScript(next, on: db)
            let after = try await migrator(db, directory).status()
            #expect(after.isUpToDate && after.applied == ["001_users.sql", "002_orders.sql", "003_orders_total.sql"])
        }
    }

    @Test func aNoTransactionFileHasNoScript() async throws {
        let directory = try MigrationDirectory(["001_index.sql": "-- pgdbm:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON {{tables.t}} (v);"])
        defer { directory.remove() }
        try await withTestSchema { _, db in
            #expect {
                try migrator(db, directory).script(applying: try directory.load().files, creatingSchema: false)
            } throws: { ($0 as? SchemaDBError)?.code == .invalidMigrationFile }
        }
    }

    /// Runs a script's statements in order on one connection, as `psql -f` does.
    private func runScript(_ script: String, on db: SchemaDatabase) async throws {
        let statements = try SQLStatementSplitter.split(script)
        try await db.withConnection { session in
            for statement in statements { try await session.execute(try SQLTemplate(statement)) }
        }
    }

    @Test func noTransactionFilesRunOutsideATransaction() async throws {
        let directory = try MigrationDirectory([
            "001_t.sql": "CREATE TABLE {{tables.t}} (id int, v text);",
            "002_index.sql": "-- pgdbm:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON {{tables.t}} (v);",
            "003_more.sql": "ALTER TABLE {{tables.t}} ADD COLUMN w int;",
        ])
        defer { directory.remove() }
        try await withTestSchema(ownDatabase: true) { _, db in
            let report = try await migrator(db, directory).apply()
            #expect(report.applied.map(\.filename) == ["001_t.sql", "002_index.sql", "003_more.sql"])
            #expect(try await db.fetchValue("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 't_v'", db.schema!.name, as: Int.self) == 1)
            // Inside a caller's transaction such a file cannot run, and nothing is applied.
            try await TestPostgres.withTemporarySchema(pool: db.pool) { other in
                await #expect {
                    try await other.withTransaction { tx in try await migrator(other, directory).apply(inTransaction: tx) }
                } throws: { ($0 as? SchemaDBError)?.migrationFile == "002_index.sql" }
                let created = try await other.tableExists("t")
                #expect(!created)
            }
        }
    }

    @Test func aSchemaMigratedByPgdbmIsUpToDate() async throws {
        let directory = try MigrationDirectory(Self.initial)
        defer { directory.remove() }
        try await withTestSchema { _, db in
            // pgdbm 0.5's tracking table, created and filled the way pgdbm does it.
            try await db.execute("""
                CREATE TABLE {{tables.schema_migrations}} (
                    id SERIAL PRIMARY KEY, filename VARCHAR(255) NOT NULL, checksum VARCHAR(64) NOT NULL,
                    module_name VARCHAR(100), applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    applied_by VARCHAR(100) DEFAULT CURRENT_USER, execution_time_ms INTEGER, UNIQUE(filename, module_name))
                """)
            for (name, content) in Self.initial.sorted(by: { $0.key < $1.key }) {
                for statement in try SQLStatementSplitter.split(content) { try await db.execute(try SQLTemplate(statement)) }
                try await db.execute(
                    "INSERT INTO {{tables.schema_migrations}} (filename, checksum, module_name, execution_time_ms) VALUES ($1, $2, $3, 5)",
                    name, MigrationFile.checksum(of: content), name == "001_users.sql" ? nil : "app")
            }
            let status = try await migrator(db, directory).status()
            #expect(status.isUpToDate)
            #expect(try await migrator(db, directory).apply().wasUpToDate)
        }
    }
}
