import Foundation
import NIOCore
import PostgresNIO
import _ConnectionPoolModule

extension SchemaDBError {
    static func invalidIdentifier(_ name: String, _ problem: String, file: String = #fileID, line: Int = #line) -> Self {
        let shown = name.count > 70 ? String(name.prefix(70)) + "…" : name
        return Self(
            code: .invalidIdentifier,
            message: "invalid identifier \"\(shown.replacingNewlines())\": \(problem); use 1 to 63 ASCII letters, digits or '_', not starting with a digit",
            file: file, line: line)
    }

    static func invalidTemplate(_ sql: String, placeholder: String, _ problem: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(code: .invalidTemplate, message: "invalid placeholder \(placeholder): \(problem)", sql: sql, file: file, line: line)
    }

    static func schemaPlaceholderWithoutSchema(_ sql: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(code: .invalidTemplate, message: "{{schema}} used on a database handle with no schema; give the handle a schema", sql: sql, file: file, line: line)
    }

    static func unterminatedSQL(what: String, line sqlLine: Int, file: String = #fileID, line: Int = #line) -> Self {
        Self(code: .invalidSQL, message: "the \(what) starting on line \(sqlLine) is never closed", file: file, line: line)
    }

    static func invalidConfiguration(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(code: .invalidConfiguration, message: message, file: file, line: line)
    }

    /// Wraps any error thrown while running `sql` in `schema`. `SchemaDBError` and
    /// `CancellationError` pass through unchanged.
    package static func wrapping(
        _ error: any Error, sql: String?, schema: SQLIdentifier?, migrationFile: String? = nil,
        file: String = #fileID, line: Int = #line
    ) -> any Error {
        if var error = error as? SchemaDBError {
            if error.schema == nil { error.schema = schema?.name }
            if error.migrationFile == nil { error.migrationFile = migrationFile }
            return error
        }
        if error is CancellationError { return error }
        var wrapped: SchemaDBError
        if let error = error as? PSQLError {
            wrapped = fromPSQLError(error, sql: sql, file: file, line: line)
        } else if let error = error as? PostgresDecodingError {
            wrapped = Self(
                code: .decodingFailed,
                message: "column \"\(error.columnName)\" of type \(error.postgresType) cannot be decoded as \(error.targetType)",
                sql: sql, underlying: error, file: file, line: line)
        } else if let error = error as? ConnectionPoolError {
            // The pool gave up connecting (its circuit breaker is open) or is shut down.
            wrapped = Self(code: .connectionFailed, message: "the pool has no connection to the server (\(error))", sql: sql, underlying: error, file: file, line: line)
        } else if let error = error as? PostgresTransactionError {
            return wrapping(error.closureError ?? error.commitError ?? error.beginError ?? error.rollbackError ?? error, sql: sql, schema: schema, migrationFile: migrationFile, file: file, line: line)
        } else {
            wrapped = Self(code: .queryFailed, message: "query failed: \(error)", sql: sql, underlying: error, file: file, line: line)
        }
        wrapped.schema = schema?.name
        wrapped.migrationFile = migrationFile
        if migrationFile != nil && wrapped.code == .queryFailed { wrapped.code = .migrationFailed }
        return wrapped
    }

    private static func fromPSQLError(_ error: PSQLError, sql: String?, file: String, line: Int) -> Self {
        guard let info = error.serverInfo else {
            var result = Self(
                code: .connectionFailed,
                message: "the database connection failed (\(error.code)\(error.underlying.map { ": \($0)" } ?? ""))",
                sql: sql, underlying: error, file: file, line: line)
            if error.code == .tooManyParameters { result.code = .queryFailed; result.message = "too many bind parameters (the limit is 65535)" }
            return result
        }
        let state = info[.sqlState] ?? ""
        let code: Code
        let message: String
        switch state {
        case "23505": (code, message) = (.uniqueViolation, "a unique constraint was violated")
        case "55P03": (code, message) = (.lockTimeout, "a lock was not granted within lock_timeout")
        case "57014": (code, message) = (.statementTimeout, "the statement was cancelled or ran past statement_timeout")
        case let s where s.hasPrefix("08") || s.hasPrefix("28") || s == "3D000" || s == "57P01" || s == "57P03":
            (code, message) = (.connectionFailed, "the database connection failed")
        default: (code, message) = (.queryFailed, "query failed")
        }
        var result = Self(code: code, message: message, sql: sql, underlying: error, file: file, line: line)
        result.sqlState = info[.sqlState]
        result.serverMessage = info[.message]
        result.detail = info[.detail]
        result.hint = info[.hint]
        result.constraint = info[.constraintName]
        result.table = info[.tableName]
        result.column = info[.columnName]
        return result
    }
}
