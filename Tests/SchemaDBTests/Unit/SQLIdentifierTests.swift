import PostgresNIO
import SchemaDB
import Testing

@Suite struct SQLIdentifierTests {
    @Test(arguments: ["acme", "Acme_Corp", "_private", "t1", String(repeating: "a", count: 63)])
    func validNamesAreAcceptedAndQuoted(name: String) throws {
        let identifier = try SQLIdentifier(name)
        #expect(identifier.name == name)
        #expect(identifier.quoted == "\"\(name)\"")
    }

    @Test(arguments: [
        "", "1tenant", String(repeating: "a", count: 64), "acme corp", "acme-corp", "acme\"; DROP SCHEMA public; --",
        "ténant", "acme.users", "a\u{0}b", "😀",
    ])
    func invalidNamesAreRefusedWithTheReason(name: String) {
        #expect(SQLIdentifier.problem(with: name) != nil)
        #expect {
            _ = try SQLIdentifier(name)
        } throws: { error in
            let error = error as? SchemaDBError
            return error?.code == .invalidIdentifier && error?.description.contains("invalid identifier") == true
        }
    }

    @Test func multiByteNamesCountBytesAgainstTheLimit() {
        // 32 two-byte characters are 64 bytes: over the limit even though only 32 characters.
        #expect(SQLIdentifier.problem(with: String(repeating: "é", count: 32))?.contains("64 bytes") == true)
    }

    @Test func interpolationQuotesIdentifiersAndKeepsValuesBound() throws {
        let table = try SQLIdentifier("Users")
        let schema = try SQLIdentifier("Acme")
        let query: PostgresQuery = "SELECT * FROM \(identifier: table, in: schema) WHERE id = \(42)"
        #expect(query.sql == #"SELECT * FROM "Acme"."Users" WHERE id = $1"#)
        #expect(query.binds.count == 1)
        let plain: PostgresQuery = "DROP TABLE \(identifier: table)"
        #expect(plain.sql == #"DROP TABLE "Users""#)
    }
}
