import Foundation
@testable import SchemaDB
import Testing

@Suite struct SchemaDBErrorTests {
    @Test func descriptionIsOneLineWithTheContextAndTruncatedSQL() {
        var error = SchemaDBError(code: .queryFailed, message: "query failed", schema: "acme", migrationFile: "003_x.sql", sql: "SELECT\n" + String(repeating: "x, ", count: 200))
        error.sqlState = "42P01"
        error.serverMessage = "relation \"acme.users\" does not exist"
        error.detail = "line\nbreak"
        let text = error.description
        #expect(!text.contains("\n"))
        #expect(text.contains("schema \"acme\""))
        #expect(text.contains("migration 003_x.sql"))
        #expect(text.contains("SQLSTATE 42P01: relation \"acme.users\" does not exist"))
        #expect(text.contains("…"))
        #expect(text.count < 400)
    }

    @Test func copyRowsAreEscapedForTheTextFormat() {
        var output = ""
        CopyTextFormat.append(["a\tb", nil, "back\\slash\nnew\rline", 42, true, 1.5], to: &output)
        #expect(output == "a\\tb\t\\N\tback\\\\slash\\nnew\\rline\t42\tt\t1.5\n")
    }

    @Test func datesCopyAsUTCWithMicroseconds() {
        #expect(Date(timeIntervalSince1970: 1_700_000_000.25).copyText == "2023-11-14 22:13:20.250000+00")
    }
}
