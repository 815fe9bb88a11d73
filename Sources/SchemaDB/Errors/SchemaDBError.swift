import PostgresNIO

/// The one error type of `SchemaDB`.
///
/// Its ``description`` is one line that names the problem, the schema, the migration file, the
/// server's SQLSTATE, message and detail, and the start of the SQL. It never shows a password or
/// a bind value. Branch on ``code`` or on ``sqlState``.
public struct SchemaDBError: Error, Sendable {
    /// What went wrong. New codes may be added in minor releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidIdentifier, invalidTemplate, invalidSQL, invalidConfiguration
            case connectionFailed, queryFailed, uniqueViolation, lockTimeout, statementTimeout
            case decodingFailed, transactionFailed
            case migrationDirectoryUnreadable, invalidMigrationFile, migrationChecksumMismatch
            case migrationOutOfOrder, migrationFileMissing, migrationFailed, migrationLockTimeout
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A schema, table or module name that is not a valid identifier.
        public static let invalidIdentifier = Self(.invalidIdentifier)
        /// An unknown or malformed `{{...}}` placeholder.
        public static let invalidTemplate = Self(.invalidTemplate)
        /// SQL text the splitter cannot split: an unclosed string, identifier, dollar quote or comment.
        public static let invalidSQL = Self(.invalidSQL)
        /// A connection URL, environment variable or setting that cannot be used.
        public static let invalidConfiguration = Self(.invalidConfiguration)
        /// The server cannot be reached, refused the login, or the database does not exist.
        public static let connectionFailed = Self(.connectionFailed)
        /// The server rejected a statement; see ``SchemaDBError/sqlState``.
        public static let queryFailed = Self(.queryFailed)
        /// A unique constraint was violated (SQLSTATE `23505`).
        public static let uniqueViolation = Self(.uniqueViolation)
        /// A lock was not granted within `lock_timeout` (SQLSTATE `55P03`).
        public static let lockTimeout = Self(.lockTimeout)
        /// A statement ran past `statement_timeout` or was cancelled (SQLSTATE `57014`).
        public static let statementTimeout = Self(.statementTimeout)
        /// A column could not be decoded into the requested Swift type.
        public static let decodingFailed = Self(.decodingFailed)
        /// `COMMIT`, `ROLLBACK` or a savepoint command failed.
        public static let transactionFailed = Self(.transactionFailed)
        /// The migrations directory does not exist or cannot be listed.
        public static let migrationDirectoryUnreadable = Self(.migrationDirectoryUnreadable)
        /// A migration file is empty, comment-only, misnamed, unreadable or outside its directory.
        public static let invalidMigrationFile = Self(.invalidMigrationFile)
        /// An applied migration file was changed afterwards.
        public static let migrationChecksumMismatch = Self(.migrationChecksumMismatch)
        /// A new migration file sorts before one that is already applied.
        public static let migrationOutOfOrder = Self(.migrationOutOfOrder)
        /// A migration recorded as applied has no file any more.
        public static let migrationFileMissing = Self(.migrationFileMissing)
        /// A migration statement failed; nothing of its transaction was kept.
        public static let migrationFailed = Self(.migrationFailed)
        /// Another runner held the migration lock of the schema and module for too long.
        public static let migrationLockTimeout = Self(.migrationLockTimeout)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// One sentence naming the problem and, where there is one, what to do.
    public var message: String
    /// The server's SQLSTATE, such as `42P01`, when the server reported the error.
    public var sqlState: String?
    /// The server's message, when the server reported the error. It may quote data values (an
    /// invalid input, say); ``description`` shows ``redactedServerMessage`` instead.
    public var serverMessage: String?
    /// The server's detail line, when it sent one. It may carry data values (`Key (email)=(…)`),
    /// so only ``debugDescription`` shows it.
    public var detail: String?
    /// The constraint the server named, such as a violated unique constraint.
    public var constraint: String?
    /// The table the server named.
    public var table: String?
    /// The column the server named.
    public var column: String?
    /// The server's hint, when it sent one.
    public var hint: String?
    /// The schema the operation ran in.
    public var schema: String?
    /// The migration file being checked or applied.
    public var migrationFile: String?
    /// The SQL that failed, without bind values.
    public var sql: String?
    /// The error this one wraps. Not shown by ``description``.
    public var underlying: (any Error & Sendable)?
    /// Where the error was raised.
    public var file: String
    /// Where the error was raised.
    public var line: Int

    /// Creates an error. Library code uses the static factories.
    public init(
        code: Code,
        message: String,
        schema: String? = nil,
        migrationFile: String? = nil,
        sql: String? = nil,
        underlying: (any Error & Sendable)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.schema = schema
        self.migrationFile = migrationFile
        self.sql = sql
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    /// The longest SQL text shown by ``description``.
    static let shownSQLLength = 160
}

extension SchemaDBError: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String {
        var parts = [message]
        if let schema { parts.append("schema \"\(schema)\"") }
        if let migrationFile { parts.append("migration \(migrationFile)") }
        if let sqlState {
            parts.append("SQLSTATE \(sqlState): \(redactedServerMessage ?? "")")
        } else if let serverMessage = redactedServerMessage {
            parts.append(serverMessage)
        }
        if let table { parts.append("table \"\(table)\"") }
        if let column { parts.append("column \"\(column)\"") }
        if let constraint { parts.append("constraint \"\(constraint)\"") }
        if let hint { parts.append("hint: \(hint)") }
        if let sql { parts.append("SQL: \(Self.abbreviate(sql))") }
        return parts.joined(separator: "; ").replacingNewlines()
    }

    /// ``description`` with the server's own message and detail, which may quote data values:
    /// for a debugger, never for logs or stored rows.
    public var debugDescription: String {
        var result = "SchemaDBError(code: \(code), \(description), at: \(file):\(line)"
        if let serverMessage, serverMessage != redactedServerMessage { result += ", server message: \(serverMessage)" }
        if let detail { result += ", detail: \(detail)" }
        if let underlying { result += ", underlying: \(Self.safeDescription(of: underlying))" }
        return result + ")"
    }

    /// ``serverMessage`` without the data values it may quote. Data exceptions (SQLSTATE class
    /// 22) and integrity violations (class 23) quote values in double quotes, as in
    /// `invalid input syntax for type integer: "…"`; every quoted part that is not the table,
    /// column, constraint or schema the server named is replaced with `…`.
    public var redactedServerMessage: String? {
        guard let serverMessage else { return nil }
        guard let sqlState, sqlState.hasPrefix("22") || sqlState.hasPrefix("23") else { return serverMessage }
        let names = Set([table, column, constraint, schema].compactMap { $0 })
        var result = ""
        var rest = Substring(serverMessage)
        while let open = rest.firstIndex(of: "\"") {
            result += rest[...open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "\"") else {
                result += "…\""
                return result
            }
            let quoted = String(rest[afterOpen..<close])
            result += names.contains(quoted) ? quoted : "…"
            result += "\""
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    static func abbreviate(_ sql: String) -> String {
        let flat = sql.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        guard flat.count > shownSQLLength else { return flat }
        return String(flat.prefix(shownSQLLength)) + "…"
    }

    /// A description of `error` for logs: no query, bind value, server message or detail.
    static func safeDescription(of error: any Error) -> String {
        if let error = error as? PSQLError {
            var fields: [String] = []
            if let state = error.serverInfo?[.sqlState] { fields.append("sqlState: \(state)") }
            if let underlying = error.underlying { fields.append("underlying: \(underlying)") }
            return "PSQLError(code: \(error.code)\(fields.isEmpty ? "" : ", " + fields.joined(separator: ", ")))"
        }
        if let error = error as? PostgresDecodingError {
            return "PostgresDecodingError(code: \(error.code), column: \(error.columnName), postgresType: \(error.postgresType), target: \(error.targetType))"
        }
        return String(describing: error)
    }
}

extension String {
    func replacingNewlines() -> String {
        guard contains(where: \.isNewline) else { return self }
        return split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
