import Testing
@testable import SchemaDB

struct QueryInstrumentationTests {
    @Test(arguments: [
        ("SELECT 1", "SELECT"), ("  select * from x", "SELECT"), ("(SELECT 1)", "SELECT"), ("\nWITH a AS (SELECT 1) SELECT 1", "WITH"),
        ("-- a comment\nSELECT 1", "QUERY"), ("", "QUERY"), ("COMMIT", "COMMIT"),
    ])
    func theOperationNameIsTheFirstKeyword(sql: String, name: String) {
        #expect(QueryInstrumentation.operationName(of: sql) == name)
    }
}
