import SchemaDB
import Testing

@Suite struct SQLStatementSplitterTests {
    @Test func splitsAtSemicolonsAndTrims() throws {
        #expect(try SQLStatementSplitter.split("SELECT 1;\n  SELECT 2 ;SELECT 3") == ["SELECT 1", "SELECT 2", "SELECT 3"])
    }

    @Test func semicolonsInStringsIdentifiersAndCommentsDoNotSplit() throws {
        let sql = """
            INSERT INTO t VALUES ('a;b', 'it''s; fine', E'esc\\';aped');
            SELECT "semi;colon" FROM t; -- trailing; comment
            /* block; /* nested; */ still; */ SELECT 3;
            """
        let statements = try SQLStatementSplitter.split(sql)
        #expect(statements.count == 3)
        #expect(statements[0] == #"INSERT INTO t VALUES ('a;b', 'it''s; fine', E'esc\';aped')"#)
        #expect(statements[1] == #"SELECT "semi;colon" FROM t"#)
        #expect(statements[2].hasSuffix("SELECT 3"))
    }

    @Test func dollarQuotedBodiesStayWhole() throws {
        let sql = """
            CREATE FUNCTION f() RETURNS int AS $$ BEGIN PERFORM 1; RETURN 2; END $$ LANGUAGE plpgsql;
            CREATE FUNCTION g() RETURNS text AS $fn$ SELECT 'x;$$;y' $fn$ LANGUAGE sql;
            DO $do$ BEGIN RAISE NOTICE 'a;b'; END $do$;
            """
        let statements = try SQLStatementSplitter.split(sql)
        #expect(statements.count == 3)
        #expect(statements[0].hasSuffix("LANGUAGE plpgsql"))
        #expect(statements[1].contains("'x;$$;y'"))
        #expect(statements[2].hasPrefix("DO $do$"))
    }

    @Test func commentOnlyAndEmptyTextHaveNoStatements() throws {
        #expect(try SQLStatementSplitter.split("").isEmpty)
        #expect(try SQLStatementSplitter.split("-- nothing here\n/* nor here; */\n;;\n").isEmpty)
    }

    @Test func anEscapeStringEndsAtItsRealClosingQuote() throws {
        // In E'' strings \\ is one backslash, so the quote after it closes the string.
        #expect(try SQLStatementSplitter.split(#"SELECT E'a\\'; SELECT 2"#) == [#"SELECT E'a\\'"#, "SELECT 2"])
        // In standard strings a backslash is an ordinary character.
        #expect(try SQLStatementSplitter.split(#"SELECT 'a\'; SELECT 2"#) == [#"SELECT 'a\'"#, "SELECT 2"])
    }

    @Test func identifiersEndingInEAreNotEscapeStrings() throws {
        #expect(try SQLStatementSplitter.split(#"SELECT name'x'; SELECT 2"#).count == 2)
    }

    @Test(arguments: [
        ("SELECT 'unclosed; SELECT 2", "string literal"),
        ("SELECT \"unclosed; SELECT 2", "quoted identifier"),
        ("SELECT 1; /* open /* nested */ comment", "block comment"),
        ("CREATE FUNCTION f() AS $x$ body; SELECT 2", "dollar-quoted string"),
    ])
    func unclosedRegionsAreErrorsNamingTheLine(sql: String, what: String) {
        #expect {
            _ = try SQLStatementSplitter.split(sql)
        } throws: { error in
            let error = error as? SchemaDBError
            return error?.code == .invalidSQL && error?.message.contains(what) == true && error?.message.contains("line 1") == true
        }
    }

    @Test func hostileInputNeverCrashes() throws {
        let fragments = ["'", "''", "\"", "$$", "$a$", "--", "/*", "*/", ";", "E'", "\\", "\n", "x", "$1", "{{", "}}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let sql = (0..<Int.random(in: 1...12, using: &generator)).map { _ in fragments.randomElement(using: &generator)! }.joined()
            _ = try? SQLStatementSplitter.split(sql)
            _ = try? SQLTemplate(sql).render(schema: nil)
        }
    }
}
