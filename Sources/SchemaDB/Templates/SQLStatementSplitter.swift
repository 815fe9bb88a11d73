/// Splits SQL text into statements at semicolons in code, never inside string literals,
/// quoted identifiers, dollar-quoted bodies or comments.
///
/// postgres-nio sends one statement per query (the extended protocol), so a migration file
/// with several statements runs statement by statement.
public enum SQLStatementSplitter {
    /// The statements of `sql`, trimmed, without their terminating semicolons. Statements
    /// made only of comments and whitespace are dropped.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidSQL`` when a string,
    ///   quoted identifier, dollar quote or block comment is never closed.
    public static func split(_ sql: String) throws -> [String] {
        let bytes = Array(sql.utf8)
        let lexer = SQLLexer(bytes)
        if let unterminated = lexer.unterminated {
            let line = bytes[..<unterminated.offset].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
            throw SchemaDBError.unterminatedSQL(what: unterminated.what, line: line)
        }
        var statements: [String] = []
        var statementStart = 0
        var hasContent = false

        func finish(at end: Int) {
            if hasContent {
                let text = String(decoding: bytes[statementStart..<end], as: UTF8.self).trimmingWhitespace()
                if !text.isEmpty { statements.append(text) }
            }
            hasContent = false
        }

        for token in lexer.tokens {
            switch token.kind {
            case .lineComment, .blockComment:
                continue
            case .code:
                for index in token.range {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: ";") {
                        finish(at: index)
                        statementStart = index + 1
                    } else if !(byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D) {
                        hasContent = true
                    }
                }
            default:
                hasContent = true
            }
        }
        finish(at: bytes.count)
        return statements
    }
}
