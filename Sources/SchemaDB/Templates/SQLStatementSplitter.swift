/// Splits SQL text into statements at semicolons in code, never inside string literals,
/// quoted identifiers, dollar-quoted bodies or comments.
///
/// postgres-nio sends one statement per query (the extended protocol), so a migration file
/// with several statements runs statement by statement.
public enum SQLStatementSplitter {
    /// One statement of a text, with the line it starts on.
    struct Statement: Equatable {
        var text: String
        /// 1-based line of the statement's first character that is not whitespace or comment.
        var line: Int
        /// The first words of the statement's code, upper-cased: `["START", "TRANSACTION"]`.
        var leadingKeywords: [String]
    }

    /// The statements of `sql`, trimmed, without their terminating semicolons. Statements
    /// made only of comments and whitespace are dropped.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidSQL`` when a string,
    ///   quoted identifier, dollar quote or block comment is never closed.
    public static func split(_ sql: String) throws -> [String] {
        try statements(of: sql).map(\.text)
    }

    static func statements(of sql: String) throws -> [Statement] {
        let bytes = Array(sql.utf8)
        let lexer = SQLLexer(bytes)
        if let unterminated = lexer.unterminated {
            throw SchemaDBError.unterminatedSQL(what: unterminated.what, line: lineNumber(of: unterminated.offset, in: bytes))
        }
        var statements: [Statement] = []
        var statementStart = 0
        var contentStart: Int?
        var keywords: [String] = []
        var keywordsDone = false
        var word: [UInt8] = []
        var counted = (offset: 0, line: 1)

        func line(at offset: Int) -> Int {
            for byte in bytes[counted.offset..<offset] where byte == UInt8(ascii: "\n") { counted.line += 1 }
            counted.offset = offset
            return counted.line
        }

        func endWord() {
            guard !word.isEmpty else { return }
            if keywords.count < 2 { keywords.append(String(decoding: word, as: UTF8.self).uppercased()) }
            word.removeAll()
        }

        func finish(at end: Int) {
            endWord()
            if let start = contentStart {
                let text = String(decoding: bytes[statementStart..<end], as: UTF8.self).trimmingWhitespace()
                if !text.isEmpty { statements.append(Statement(text: text, line: line(at: start), leadingKeywords: keywords)) }
            }
            contentStart = nil
            keywords = []
            keywordsDone = false
        }

        for token in lexer.tokens {
            switch token.kind {
            case .lineComment, .blockComment:
                endWord()
            case .code:
                for index in token.range {
                    let byte = bytes[index]
                    if byte == UInt8(ascii: ";") {
                        finish(at: index)
                        statementStart = index + 1
                    } else if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D {
                        endWord()
                    } else {
                        if contentStart == nil { contentStart = index }
                        let isLetter = (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") || byte == UInt8(ascii: "_")
                        if isLetter && !keywordsDone {
                            word.append(byte)
                        } else {
                            endWord()
                            keywordsDone = true
                        }
                    }
                }
            default:
                if contentStart == nil { contentStart = token.range.lowerBound }
                endWord()
                keywordsDone = true
            }
        }
        finish(at: bytes.count)
        return statements
    }

    private static func lineNumber(of offset: Int, in bytes: [UInt8]) -> Int {
        bytes[..<offset].reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
    }
}
