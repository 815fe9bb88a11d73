import Foundation
@testable import SchemaDB
import Testing

@Suite struct MigrationFileTests {
    @Test(arguments: [
        ("CREATE TABLE {{tables.users}} (id SERIAL PRIMARY KEY);\n", "3802b26c8b656041b3efa4da98d3a1b7709c7abf53bd92b03b2c50c9c20fe4d7"),
        ("\r\n  CREATE TABLE {{tables.users}} (id SERIAL PRIMARY KEY);\r\nSELECT 1;\r\n\n", "fd0fc6728fb7b695ccd42dc9a1da970f1f22a2e6dd6b8d8e4a2e4e8f24a77262"),
        ("\u{a0}SELECT 1;\u{2003}\n", "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a"),
    ])
    func checksumsMatchPgdbm(content: String, expected: String) {
        // Expected digests computed with Python: sha256(text.replace("\r\n", "\n").strip()).
        #expect(MigrationFile.checksum(of: content) == expected)
    }

    @Test(arguments: [
        ("001_init.sql", "001"), ("V2__users.sql", "2"), ("20240101120000_add.sql", "20240101120000"), ("10_x.sql", "10"),
    ])
    func versionsComeFromTheNamePrefix(filename: String, version: String) throws {
        #expect(try MigrationFile(filename: filename, content: "SELECT 1").version == version)
    }

    @Test(arguments: ["init.sql", "V2_users.sql", "1-init.sql", "_1_init.sql"])
    func namesWithoutAVersionAreRefused(filename: String) {
        #expect { _ = try MigrationFile(filename: filename, content: "SELECT 1") } throws: {
            ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains(filename)
        }
    }

    @Test func filesOrderNumericallyNotLexically() throws {
        let set = MigrationSet(files: try ["10_ten.sql", "9_nine.sql", "011_eleven.sql", "1_one.sql"].map {
            try MigrationFile(filename: $0, content: "SELECT 1")
        })
        #expect(set.files.map(\.filename) == ["1_one.sql", "9_nine.sql", "10_ten.sql", "011_eleven.sql"])
    }

    @Test(arguments: ["", "   \n", "-- only a comment\n/* and a block */\n"])
    func emptyAndCommentOnlyFilesAreRefused(content: String) {
        #expect { _ = try MigrationFile(filename: "001_x.sql", content: content) } throws: {
            ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains("no SQL statement")
        }
    }

    @Test func brokenFilesAreRefusedNamingTheFileAndTheProblem() {
        #expect { _ = try MigrationFile(filename: "002_x.sql", content: "SELECT 'oops;") } throws: {
            "\($0)".contains("002_x.sql") && "\($0)".contains("string literal")
        }
        #expect { _ = try MigrationFile(filename: "003_x.sql", content: "SELECT * FROM {{tabels.x}}") } throws: {
            "\($0)".contains("003_x.sql") && "\($0)".contains("{{tabels.x}}")
        }
    }

    @Test func theNoTransactionMarkerIsRecognised() throws {
        #expect(try MigrationFile(filename: "1_a.sql", content: "SELECT 1").runsInTransaction)
        let marked = try MigrationFile(filename: "2_b.sql", content: "-- pgdbm:no-transaction\nCREATE INDEX CONCURRENTLY i ON {{tables.t}} (x);")
        #expect(!marked.runsInTransaction)
        #expect(marked.statements.count == 1)
    }

    @Test func aDirectoryIsReadNonRecursivelyAndOnlySQLFilesCount() throws {
        try withTemporaryDirectory { directory in
            try "CREATE TABLE {{tables.a}} (id int);".write(to: directory.appendingPathComponent("002_a.sql"), atomically: true, encoding: .utf8)
            try "CREATE TABLE {{tables.b}} (id int);".write(to: directory.appendingPathComponent("10_b.sql"), atomically: true, encoding: .utf8)
            try "notes".write(to: directory.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("archive"), withIntermediateDirectories: true)
            try "SELECT 1".write(to: directory.appendingPathComponent("archive/001_old.sql"), atomically: true, encoding: .utf8)
            let set = try MigrationSet(directory: directory)
            #expect(set.files.map(\.filename) == ["002_a.sql", "10_b.sql"])
            #expect(set.latest?.filename == "10_b.sql")
        }
    }

    @Test func aLinkResolvingOutsideTheDirectoryIsRefused() throws {
        try withTemporaryDirectory { outside in
            try withTemporaryDirectory { directory in
                let target = outside.appendingPathComponent("evil.sql")
                try "DROP SCHEMA public CASCADE;".write(to: target, atomically: true, encoding: .utf8)
                try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent("001_evil.sql"), withDestinationURL: target)
                #expect { _ = try MigrationSet(directory: directory) } throws: {
                    ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains("outside the migrations directory")
                }
            }
        }
    }

    @Test(arguments: [
        ("ALTER TABLE {{tables.t}} ADD c int;\nROLLBACK;\nSELECT 1;", 2, "ROLLBACK"),
        ("SELECT 1;\n\n  commit;", 3, "COMMIT"),
        ("BEGIN;\nSELECT 1;", 1, "BEGIN"),
        ("SELECT 1;\n/* c */ END;", 2, "END"),
        ("SELECT 1;\nabort", 2, "ABORT"),
        ("SAVEPOINT a;\nSELECT 1;", 1, "SAVEPOINT"),
        ("SELECT 1;\n-- note\nRELEASE SAVEPOINT a;", 3, "RELEASE SAVEPOINT"),
        ("START TRANSACTION;", 1, "START TRANSACTION"),
        ("SELECT 1;\nPREPARE TRANSACTION 'x';", 2, "PREPARE TRANSACTION"),
        ("-- pgdbm:no-transaction\nCOMMIT;", 2, "COMMIT"),
    ])
    func transactionControlIsRefusedNamingFileAndLine(content: String, line: Int, command: String) {
        #expect { _ = try MigrationFile(filename: "004_x.sql", content: content) } throws: {
            ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains("004_x.sql") && "\($0)".contains("line \(line) has \(command)")
        }
    }

    @Test func transactionWordsInBodiesStringsAndOtherStatementsAreFine() throws {
        let content = """
            CREATE FUNCTION {{schema}}.f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
            INSERT INTO {{tables.t}} (note) VALUES ('ROLLBACK; BEGIN');
            PREPARE q AS SELECT 1;
            -- COMMIT;
            SELECT 1 AS "commit";
            """
        #expect(try MigrationFile(filename: "005_x.sql", content: content).statements.count == 4)
    }

    @Test func aFileWithANulByteIsRefusedNamingTheLine() {
        #expect { _ = try MigrationFile(filename: "006_x.sql", content: "SELECT 1;\nSELECT '\u{0}';") } throws: {
            ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains("006_x.sql") && "\($0)".contains("line 2 has a NUL byte")
        }
    }

    @Test func upperCaseExtensionsAndBrokenOrLoopingLinksAreRefusedNotSkipped() throws {
        try withTemporaryDirectory { directory in
            try "SELECT 1".write(to: directory.appendingPathComponent("001_a.SQL"), atomically: true, encoding: .utf8)
            #expect { _ = try MigrationSet(directory: directory) } throws: { "\($0)".contains("001_a.SQL") && "\($0)".contains("lower-case .sql") }
        }
        try withTemporaryDirectory { directory in
            try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent("001_gone.sql"), withDestinationURL: directory.appendingPathComponent("nowhere.sql"))
            #expect { _ = try MigrationSet(directory: directory) } throws: { "\($0)".contains("001_gone.sql") && "\($0)".contains("link to nothing") }
        }
        try withTemporaryDirectory { directory in
            try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent("001_loop.sql"), withDestinationURL: directory.appendingPathComponent("002_loop.sql"))
            try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent("002_loop.sql"), withDestinationURL: directory.appendingPathComponent("001_loop.sql"))
            #expect { _ = try MigrationSet(directory: directory) } throws: { ($0 as? SchemaDBError)?.code == .invalidMigrationFile && "\($0)".contains("_loop.sql") }
        }
    }

    @Test func aMissingDirectoryIsAClearError() {
        #expect { _ = try MigrationSet(directory: URL(fileURLWithPath: "/nonexistent/migrations")) } throws: {
            ($0 as? SchemaDBError)?.code == .migrationDirectoryUnreadable && "\($0)".contains("/nonexistent/migrations")
        }
    }

    @Test func theNextFileFollowsTheHighestVersionWithTheSameWidth() throws {
        try withTemporaryDirectory { directory in
            try "SELECT 1".write(to: directory.appendingPathComponent("009_a.sql"), atomically: true, encoding: .utf8)
            try "SELECT 1".write(to: directory.appendingPathComponent("010_b.sql"), atomically: true, encoding: .utf8)
            let url = try MigrationSet.createNextFile(named: "Add invoices!", in: directory, content: "SELECT 2;")
            #expect(url.lastPathComponent == "011_add_invoices.sql")
            #expect(try String(contentsOf: url, encoding: .utf8) == "SELECT 2;")
            let first = try MigrationSet.createNextFile(named: "init", in: directory.appendingPathComponent("fresh"))
            #expect(first.lastPathComponent == "001_init.sql")
        }
    }

    @Test func thePlannerFindsChangedMissingAndOutOfOrderFiles() throws {
        let files = try ["1_a.sql", "2_b.sql", "3_c.sql"].map { try MigrationFile(filename: $0, content: "SELECT 1") }
        func row(_ name: String, _ checksum: String) -> AppliedMigration {
            AppliedMigration(filename: name, checksum: checksum, module: "m")
        }
        let good = files[0].checksum
        let status = MigrationPlanner.status(files: files, applied: [row("1_a.sql", "bad"), row("3_c.sql", good), row("0_gone.sql", good)])
        #expect(status.changed.map(\.filename) == ["1_a.sql"])
        #expect(status.pending == ["2_b.sql"])
        #expect(status.outOfOrder == ["2_b.sql"])
        #expect(status.missing == ["0_gone.sql"])
        #expect(status.applied == ["3_c.sql"])
        #expect(!status.isUpToDate)

        let strict = MigrationPlanner.Options(allowsOutOfOrder: false, allowsMissingFiles: false)
        #expect { try MigrationPlanner.pending(files: files, applied: [row("3_c.sql", good)], schema: "s", options: strict) } throws: {
            ($0 as? SchemaDBError)?.code == .migrationOutOfOrder
        }
        let lenient = MigrationPlanner.Options(allowsOutOfOrder: true, allowsMissingFiles: true)
        let pending = try MigrationPlanner.pending(files: files, applied: [row("3_c.sql", good), row("0_gone.sql", good)], schema: "s", options: lenient)
        #expect(pending.map(\.filename) == ["1_a.sql", "2_b.sql"])
    }
}

func withTemporaryDirectory(_ body: (URL) throws -> Void) throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schemadb-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try body(directory)
}
