import Crypto
import Foundation

/// One migration: a `.sql` file, read, checked and split into statements once.
public struct MigrationFile: Sendable, Hashable {
    /// The file name, such as `003_add_invoices.sql`: the migration's identity in the tracking table.
    public let filename: String
    /// The numeric version from the file name (`003` in `003_x.sql`, `2` in `V2__x.sql`).
    public let version: String
    /// The file's text as read.
    public let content: String
    /// pgdbm's checksum: the SHA-256 hex digest of the text with CRLF turned into LF and
    /// surrounding whitespace trimmed.
    public let checksum: String
    /// `false` when the file is marked `-- pgdbm:no-transaction`: its statements then run one by
    /// one outside a transaction (for `CREATE INDEX CONCURRENTLY`).
    public let runsInTransaction: Bool
    /// The statements, parsed as templates.
    public let statements: [SQLTemplate]

    /// The marker line that makes a file run outside a transaction.
    public static let noTransactionMarker = "-- pgdbm:no-transaction"

    /// Checks and parses a migration.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidMigrationFile`` when
    ///   the name has no version, or the file has no statement, an unclosed quote or comment, an
    ///   invalid placeholder, a NUL byte, or a statement that controls the transaction (`BEGIN`,
    ///   `COMMIT`, `ROLLBACK`, `END`, `ABORT`, `SAVEPOINT`, `RELEASE`, `START TRANSACTION`,
    ///   `PREPARE TRANSACTION`).
    public init(filename: String, content: String) throws {
        guard let version = Self.version(of: filename) else {
            throw Self.invalid(filename, "its name has no version prefix; name it like 001_create_users.sql, V1__create_users.sql or 20240101120000_create_users.sql")
        }
        if let nul = content.utf8.firstIndex(of: 0) {
            let line = content.utf8[..<nul].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            throw Self.invalid(filename, "line \(line) has a NUL byte, which PostgreSQL cannot receive; remove it (the file may not be text)")
        }
        let statements: [SQLStatementSplitter.Statement]
        do {
            statements = try SQLStatementSplitter.statements(of: content)
        } catch let error as SchemaDBError {
            throw Self.invalid(filename, error.message)
        }
        guard !statements.isEmpty else {
            throw Self.invalid(filename, "it has no SQL statement (it is empty or only comments); write the migration's SQL or delete the file")
        }
        if let control = statements.first(where: { Self.controlsTransaction($0.leadingKeywords) }) {
            let command = control.leadingKeywords.joined(separator: " ")
            throw Self.invalid(
                filename,
                "line \(control.line) has \(command), which would end or split the transaction the migrator commits; remove it (each file runs in the migrator's transaction, or alone when marked \(Self.noTransactionMarker))")
        }
        do {
            self.statements = try statements.map { try SQLTemplate($0.text) }
        } catch let error as SchemaDBError {
            throw Self.invalid(filename, error.message)
        }
        self.filename = filename
        self.version = version
        self.content = content
        self.checksum = Self.checksum(of: content)
        self.runsInTransaction = !content.split(whereSeparator: \.isNewline).contains {
            $0.trimmingWhitespace() == Self.noTransactionMarker
        }
    }

    /// Whether a statement starting with `keywords` begins, ends or splits a transaction.
    static func controlsTransaction(_ keywords: [String]) -> Bool {
        guard let first = keywords.first else { return false }
        switch first {
        case "BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT", "SAVEPOINT", "RELEASE":
            return true
        case "START", "PREPARE":
            return keywords.dropFirst().first == "TRANSACTION"
        default:
            return false
        }
    }

    /// pgdbm's checksum of a migration's text.
    public static func checksum(of content: String) -> String {
        let normalized = content.replacingOccurrences(of: "\r\n", with: "\n").trimmingPythonWhitespace()
        return SHA256.hash(data: Data(normalized.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The version prefix of a migration file name, or `nil` when it has none.
    package static func version(of filename: String) -> String? {
        var name = Substring(filename)
        let flyway = name.hasPrefix("V") || name.hasPrefix("v")
        if flyway { name = name.dropFirst() }
        let digits = name.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty else { return nil }
        let rest = name.dropFirst(digits.count)
        guard flyway ? rest.hasPrefix("__") : rest.hasPrefix("_") else { return nil }
        return String(digits)
    }

    /// Orders by numeric version (so `9_x.sql` runs before `10_x.sql`), then by file name.
    package static func precedes(_ lhs: (version: String, filename: String), _ rhs: (version: String, filename: String)) -> Bool {
        let left = lhs.version.drop(while: { $0 == "0" })
        let right = rhs.version.drop(while: { $0 == "0" })
        if left.count != right.count { return left.count < right.count }
        if left != right { return left < right }
        return lhs.filename < rhs.filename
    }

    private static func invalid(_ filename: String, _ problem: String) -> SchemaDBError {
        SchemaDBError(code: .invalidMigrationFile, message: "migration \(filename) cannot be used: \(problem)", migrationFile: filename)
    }
}

extension MigrationFile: CustomStringConvertible {
    public var description: String { filename }
}

extension MigrationFile: Comparable {
    public static func < (lhs: Self, rhs: Self) -> Bool {
        precedes((lhs.version, lhs.filename), (rhs.version, rhs.filename))
    }
}

extension String {
    /// Trims what Python's `str.strip()` trims, so checksums match pgdbm's byte for byte.
    func trimmingPythonWhitespace() -> String {
        let isSpace: (Unicode.Scalar) -> Bool = { scalar in
            switch scalar.value {
            case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
                return true
            default:
                return false
            }
        }
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !isSpace($0) })!
        return String(scalars[first...last])
    }
}
