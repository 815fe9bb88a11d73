public import PostgresNIO
import Foundation

/// A validated PostgreSQL identifier: a schema, table or column name.
///
/// Valid identifiers are 1 to 63 bytes of ASCII letters, digits and `_`, not starting with a digit.
/// They are always double-quoted when rendered into SQL, so mixed case is preserved everywhere
/// (`"Acme"` and `"acme"` are different schemas) and no name can break out of its quotes.
public struct SQLIdentifier: Hashable, Sendable, Comparable {
    /// The identifier as written, without quotes.
    public let name: String
    /// The identifier double-quoted for SQL, such as `"Acme"`.
    public let quoted: String

    /// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
    public static let maximumLength = 63

    /// Validates `name`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidIdentifier`` naming the problem.
    public init(_ name: String) throws {
        if let problem = Self.problem(with: name) {
            throw SchemaDBError.invalidIdentifier(name, problem)
        }
        self.name = name
        self.quoted = "\"" + name + "\""
    }

    /// Returns `nil` when `name` is a valid identifier, or a sentence naming what is wrong.
    public static func problem(with name: String) -> String? {
        let bytes = Array(name.utf8)
        guard let first = bytes.first else { return "it is empty" }
        if bytes.count > maximumLength {
            return "it is \(bytes.count) bytes long; the limit is \(maximumLength)"
        }
        if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") {
            return "it starts with a digit"
        }
        for byte in bytes where !Self.isIdentifierByte(byte) {
            return "it contains a character other than ASCII letters, digits and '_'"
        }
        return nil
    }

    static func isIdentifierByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.name < rhs.name }
}

extension SQLIdentifier: CustomStringConvertible {
    public var description: String { self.quoted }
}

extension PostgresQuery.StringInterpolation {
    /// Appends a validated identifier, double-quoted: `"SELECT * FROM \(identifier: table)"`.
    public mutating func appendInterpolation(identifier: SQLIdentifier) {
        self.appendInterpolation(unescaped: identifier.quoted)
    }

    /// Appends a schema-qualified name, each part double-quoted: `"schema"."table"`.
    public mutating func appendInterpolation(identifier table: SQLIdentifier, in schema: SQLIdentifier) {
        self.appendInterpolation(unescaped: schema.quoted + "." + table.quoted)
    }
}

extension SQLIdentifier {
    /// Double-quotes a name built from validated parts (such as an index name derived from a
    /// table name), doubling any embedded quote.
    package static func quote(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
