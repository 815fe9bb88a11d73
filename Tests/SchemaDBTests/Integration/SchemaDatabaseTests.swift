import Foundation
import InMemoryLogging
import Logging
import PostgresNIO
import SchemaDB
import SchemaDBTesting
import Testing

@Suite(integration, .timeLimit(.minutes(2)))
struct SchemaDatabaseTests {
    struct Widget: Decodable, Equatable {
        var id: Int
        var name: String
        var createdAt: Date
        var note: String?
    }

    @Test func twoSchemasOnOnePoolKeepTheirOwnRows() async throws {
        try await withTestSchema { pool, first in
            try await TestPostgres.withTemporarySchema(pool: pool) { second in
                for db in [first, second] {
                    try await db.execute("CREATE TABLE {{tables.widgets}} (id serial PRIMARY KEY, name text NOT NULL)")
                }
                try await first.execute("INSERT INTO {{tables.widgets}} (name) VALUES ($1), ($2)", "a", "b")
                try await second.execute("INSERT INTO {{tables.widgets}} (name) VALUES ($1)", "c")
                #expect(try await first.fetchValue("SELECT count(*) FROM {{tables.widgets}}", as: Int.self) == 2)
                #expect(try await second.fetchAll("SELECT name FROM {{tables.widgets}}", as: String.self) == ["c"])
            }
        }
    }

    @Test func unqualifiedNamesNeverResolveIntoAnotherSchema() async throws {
        try await withTestSchema { pool, owner in
            try await owner.execute("CREATE TABLE {{tables.secrets}} (v text)")
            try await owner.execute("INSERT INTO {{tables.secrets}} VALUES ('owner only')")
            try await TestPostgres.withTemporarySchema(pool: pool) { other in
                await #expect { try await other.fetchAll("SELECT * FROM {{tables.secrets}}") } throws: {
                    ($0 as? SchemaDBError)?.sqlState == "42P01"
                }
                // No handle ever sets search_path, so a bare name does not find the tenant's table either.
                await #expect { try await other.fetchAll("SELECT * FROM secrets") } throws: {
                    ($0 as? SchemaDBError)?.sqlState == "42P01"
                }
            }
        }
    }

    @Test func queriesReturnAffectedRowsValuesAndDecodedRows() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.widgets}} (id serial PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), note text)")
            let id = try await db.insertReturningID("INSERT INTO {{tables.widgets}} (name) VALUES ($1)", "first", as: Int.self)
            #expect(id == 1)
            let explicit = try await db.insertReturningID("INSERT INTO {{tables.widgets}} (name, note) VALUES ($1, $2) RETURNING id * 10", "second", "n", as: Int.self)
            #expect(explicit == 20)
            #expect(try await db.execute("UPDATE {{tables.widgets}} SET note = $1 WHERE note IS NULL", "filled") == 1)
            let inserted = try await db.executeMany("INSERT INTO {{tables.widgets}} (name, note) VALUES ($1, $2)", [["x", nil], ["y", "why"], ["z", nil]])
            #expect(inserted == 3)

            let widgets = try await db.fetchAll("SELECT * FROM {{tables.widgets}} ORDER BY id", as: Widget.self)
            #expect(widgets.map(\.name) == ["first", "second", "x", "y", "z"])
            #expect(widgets.map(\.note) == ["filled", "n", nil, "why", nil])
            #expect(try await db.fetchOne("SELECT * FROM {{tables.widgets}} WHERE id = $1", 2, as: Widget.self)?.name == "second")
            #expect(try await db.fetchOne("SELECT * FROM {{tables.widgets}} WHERE id = $1", 999, as: Widget.self) == nil)
            #expect(try await db.fetchValue("SELECT note FROM {{tables.widgets}} WHERE name = $1", "x", as: String.self) == nil)
            let row = try await db.fetchOne("SELECT name, id FROM {{tables.widgets}} WHERE id = $1", 1)
            let decoded = try row?.decode((String, Int).self)
            #expect(decoded?.0 == "first" && decoded?.1 == 1)
            #expect(try await db.tableExists("widgets"))
            #expect(try await !db.tableExists("gadgets"))
            #expect(try await db.execute("DELETE FROM {{tables.widgets}}") == 5)
        }
    }

    @Test func decodingIntoTheWrongTypeNamesTheColumn() async throws {
        try await withTestSchema { _, db in
            struct Wrong: Decodable { var name: Int }
            await #expect { try await db.fetchAll("SELECT 'text' AS name", as: Wrong.self) } throws: {
                let error = $0 as? SchemaDBError
                return error?.code == .decodingFailed && error?.description.contains("name") == true
            }
        }
    }

    @Test func rowsDecodeTheCommonColumnTypesByNameOrSnakeCaseOptionalsAndJSONIntoNestedValues() async throws {
        try await withTestSchema { _, db in
            struct Address: Decodable, Equatable { var city: String }
            struct Sample: Decodable, Equatable {
                var small: Int32
                var large: Int64
                var plain: Int
                var isActive: Bool
                var ratio: Double
                var title: String
                var missing: String?
                var sometimes: String?
                var token: UUID
                var issuedAt: Date
                var address: Address
            }
            let sql: SQLTemplate = """
                SELECT n::int4 AS small, (n * 10000000000)::int8 AS large, n AS plain, n % 2 = 0 AS is_active,
                       n / 4.0::float8 AS ratio, 'item ' || n AS title, NULL::text AS missing,
                       CASE WHEN n % 2 = 0 THEN 'even' END AS sometimes, ('00000000-0000-0000-0000-00000000000' || n)::uuid AS token,
                       timestamptz '2026-01-01 00:00:00+00' + n * interval '1 day' AS issued_at,
                       jsonb_build_object('city', 'c' || n) AS address
                FROM generate_series(1, 4) AS n
                """
            let samples = try await db.fetchAll(sql, as: Sample.self)
            let expected: [Sample] = (1...4).map { (n: Int) -> Sample in
                let large: Int64 = Int64(n) * 10_000_000_000
                let ratio: Double = Double(n) / 4
                let token = UUID(uuidString: "00000000-0000-0000-0000-00000000000\(n)")!
                let issuedAt = Date(timeIntervalSince1970: 1_767_225_600 + Double(n) * 86_400)
                return Sample(small: Int32(n), large: large, plain: n, isActive: n % 2 == 0, ratio: ratio, title: "item \(n)",
                              missing: nil, sometimes: n % 2 == 0 ? "even" : nil, token: token, issuedAt: issuedAt, address: Address(city: "c\(n)"))
            }
            #expect(samples == expected)
            struct NoSuchColumn: Decodable { var title: String; var colour: String }
            await #expect { try await db.fetchAll(sql, as: NoSuchColumn.self) } throws: {
                ($0 as? SchemaDBError)?.description.contains("colour") == true
            }
            struct NullIntoString: Decodable { var missing: String }
            await #expect { try await db.fetchAll(sql, as: NullIntoString.self) } throws: {
                ($0 as? SchemaDBError)?.description.contains("missing") == true
            }
        }
    }

    @Test func transactionsCommitOnReturnAndRollBackOnThrow() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.accounts}} (id int PRIMARY KEY, balance int NOT NULL)")
            try await db.withTransaction { tx in
                #expect(tx.isInTransaction)
                try await tx.execute("INSERT INTO {{tables.accounts}} VALUES (1, 100), (2, 0)")
            }
            struct Boom: Error {}
            await #expect(throws: Boom.self) {
                try await db.withTransaction { tx in
                    try await tx.execute("UPDATE {{tables.accounts}} SET balance = balance - 50 WHERE id = 1")
                    throw Boom()
                }
            }
            await #expect(throws: SchemaDBError.self) {
                try await db.withTransaction { tx in
                    try await tx.execute("UPDATE {{tables.accounts}} SET balance = balance - 50 WHERE id = 1")
                    try await tx.execute("INSERT INTO {{tables.accounts}} VALUES (1, 0)")  // duplicate key
                }
            }
            #expect(try await db.fetchValue("SELECT balance FROM {{tables.accounts}} WHERE id = 1", as: Int.self) == 100)
            // The pool's connections came back clean: a new transaction works at once.
            try await db.withTransaction { tx in
                try await tx.execute("UPDATE {{tables.accounts}} SET balance = 1 WHERE id = 2")
            }
            #expect(try await db.fetchValue("SELECT balance FROM {{tables.accounts}} WHERE id = 2", as: Int.self) == 1)
        }
    }

    @Test func aTransactionWhoseFailedStatementWasCaughtReportsTheRollback() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.accounts}} (id int PRIMARY KEY)")
            await #expect {
                try await db.withTransaction { tx in
                    try await tx.execute("INSERT INTO {{tables.accounts}} VALUES (1)")
                    _ = try? await tx.execute("INSERT INTO {{tables.accounts}} VALUES (1)")  // fails; the error is swallowed
                }
            } throws: { error in
                (error as? SchemaDBError)?.code == .transactionFailed && "\(error)".contains("rolled back, not committed")
            }
            #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 0)
        }
    }

    @Test func nestedTransactionsAreSavepoints() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.events}} (name text)")
            struct Inner: Error {}
            try await db.withTransaction { tx in
                try await tx.execute("INSERT INTO {{tables.events}} VALUES ('outer')")
                await #expect(throws: Inner.self) {
                    try await tx.withTransaction { inner in
                        try await inner.execute("INSERT INTO {{tables.events}} VALUES ('inner-rolled-back')")
                        throw Inner()
                    }
                }
                try await tx.withTransaction { inner in
                    try await inner.execute("INSERT INTO {{tables.events}} VALUES ('inner-kept')")
                    try await inner.withTransaction { deeper in
                        try await deeper.execute("INSERT INTO {{tables.events}} VALUES ('deeper')")
                    }
                }
            }
            #expect(try await db.fetchAll("SELECT name FROM {{tables.events}} ORDER BY name", as: String.self) == ["deeper", "inner-kept", "outer"])
        }
    }

    @Test func copyLoadsRowsIntoTheHandlesSchemaOnly() async throws {
        try await withTestSchema { pool, db in
            try await TestPostgres.withTemporarySchema(pool: pool) { other in
                for handle in [db, other] {
                    try await handle.execute("CREATE TABLE {{tables.items}} (id int, label text, price numeric, at timestamptz)")
                }
                let at = Date(timeIntervalSince1970: 1_700_000_000)
                let rows: [[(any CopyValue)?]] = (1...1000).map { [$0, "item\t\($0)\n", Decimal($0) / 4, at] } + [[1001, nil, nil, nil]]
                #expect(try await db.copyRows(into: "items", columns: ["id", "label", "price", "at"], rows: rows) == 1001)
                #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.items}}", as: Int.self) == 1001)
                #expect(try await other.fetchValue("SELECT count(*) FROM {{tables.items}}", as: Int.self) == 0)
                #expect(try await db.fetchValue("SELECT label FROM {{tables.items}} WHERE id = 7", as: String.self) == "item\t7\n")
                #expect(try await db.fetchValue("SELECT at FROM {{tables.items}} WHERE id = 7", as: Date.self) == at)
                // Inside a caller's transaction the copy leaves search_path as it found it.
                try await db.withTransaction { tx in
                    let before = try await tx.fetchValue("SELECT current_setting('search_path')", as: String.self)
                    try await tx.copyRows(into: "items", columns: ["id"], rows: [[2000]])
                    #expect(try await tx.fetchValue("SELECT current_setting('search_path')", as: String.self) == before)
                }
                #expect(try await db.fetchValue("SELECT count(*) FROM {{tables.items}}", as: Int.self) == 1002)
            }
        }
    }

    @Test func serverErrorsCarrySQLStateAndNeverBindValues() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.users}} (email text UNIQUE)")
            try await db.execute("INSERT INTO {{tables.users}} VALUES ($1)", "first@example.com")
            await #expect {
                try await db.execute("INSERT INTO {{tables.users}} VALUES ($1)", "first@example.com")
            } throws: { error in
                guard let error = error as? SchemaDBError else { return false }
                let shown = error.description + String(reflecting: error)
                return error.code == .uniqueViolation && error.sqlState == "23505" && error.schema == db.schema?.name
                    && error.sql?.contains("VALUES ($1)") == true && !shown.contains("$1\", \"first@example.com")
                    && !String(reflecting: error).contains("binds")
            }
        }
    }

    /// Data values the server quotes (a unique key's value, an invalid input) stay out of
    /// `description`, which logs and stored rows use; names of the table, column and constraint stay in.
    @Test func descriptionsKeepNamesAndLeaveOutDataValues() async throws {
        try await withTestSchema { _, db in
            try await db.execute("CREATE TABLE {{tables.users}} (id int, email text CONSTRAINT users_email_unique UNIQUE)")
            try await db.execute("INSERT INTO {{tables.users}} VALUES (1, $1)", "ceo@secret.example")
            let duplicate = await #expect(throws: SchemaDBError.self) {
                try await db.execute("INSERT INTO {{tables.users}} VALUES (2, $1)", "ceo@secret.example")
            }
            let invalid = await #expect(throws: SchemaDBError.self) {
                try await db.execute("INSERT INTO {{tables.users}} VALUES ($1::text::int, 'x')", "s3cr3t-number")
            }
            let unique = try #require(duplicate)
            #expect(unique.description.contains("constraint \"users_email_unique\""))
            #expect(unique.description.contains("table \"users\""))
            #expect(!unique.description.contains("ceo@secret.example"))
            #expect(String(reflecting: unique).contains("ceo@secret.example"))  // the debugger still sees it
            let syntax = try #require(invalid)
            #expect(syntax.sqlState == "22P02")
            #expect(syntax.description.contains("invalid input syntax for type integer: \"…\""))
            #expect(!syntax.description.contains("s3cr3t"))
        }
    }

    @Test func sessionTimeoutsFromTheConfigurationApplyToEveryConnection() async throws {
        try await withTestSchema(configure: { $0.statementTimeout = .milliseconds(100) }) { _, db in
            let timeout = try await db.fetchValue("SHOW statement_timeout", as: String.self)
            #expect(timeout == "100ms")
            await #expect { try await db.fetchAll("SELECT pg_sleep(2)") } throws: {
                ($0 as? SchemaDBError)?.code == .statementTimeout
            }
        }
    }

    @Test func slowQueriesAreLoggedWithoutBindValuesAndCounted() async throws {
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "test", factory: { _ in logs })
        logger.logLevel = .info
        try await withTestSchema(logger: logger, configure: { $0.slowQueryThreshold = .milliseconds(50) }) { pool, db in
            let before = pool.statistics
            _ = try await db.fetchAll("SELECT pg_sleep(0.2), $1::text", "secret-value")
            let slow = logs.entries.filter { $0.message.description == "slow query" }
            let sleeping = slow.filter { $0.metadata[LoggingKeys.statement]?.description.contains("pg_sleep(0.2)") == true }
            #expect(sleeping.count == 1)
            #expect(sleeping.first?.metadata[LoggingKeys.schema]?.description == db.schema?.name)
            #expect(!logs.entries.contains { "\($0)".contains("secret-value") })
            let statistics = pool.statistics
            #expect(statistics.slowQueries == before.slowQueries + 1)
            #expect(statistics.queries == before.queries + 1)
            #expect(statistics.maximumConnections == 8)
        }
    }

    @Test func theScopedConnectionKeepsOneSession() async throws {
        try await withTestSchema { _, db in
            try await db.withConnection { session in
                let first = try await session.fetchValue("SELECT pg_backend_pid()", as: Int32.self)
                let second = try await session.fetchValue("SELECT pg_backend_pid()", as: Int32.self)
                #expect(first == second)
            }
        }
    }

    @Test func aTransactionWhoseConnectionWasKilledFailsAtOnceAndThePoolServesAgain() async throws {
        try await withTestSchema { pool, db in
            await #expect {
                try await db.withTransaction { tx in
                    let pid = try #require(try await tx.fetchValue("SELECT pg_backend_pid()", as: Int32.self))
                    _ = try await pool.database(schema: nil).fetchAll("SELECT pg_terminate_backend($1)", pid)
                    try await Task.sleep(for: .milliseconds(300))
                    _ = try await tx.fetchAll("SELECT 1")
                }
            } throws: { ($0 as? SchemaDBError)?.code == .connectionFailed }
            // Every connection handed out after the loss answers.
            for _ in 0..<20 {
                let answer = try await db.fetchValue("SELECT 1", as: Int.self)
                #expect(answer == 1)
            }
        }
    }
}
