/// Splits SQL text into regions: code, string literals, quoted identifiers, dollar-quoted
/// bodies and comments. It knows PostgreSQL's lexical rules for `'...'` with `''`, `E'...'`
/// with backslash escapes, `"identifiers"`, `$tag$ ... $tag$`, `--` and nested `/* */`.
///
/// Templates substitute placeholders only in code and dollar-quoted bodies; the statement
/// splitter splits only at semicolons in code.
struct SQLLexer {
    enum Kind: Equatable {
        case code
        case stringLiteral
        case quotedIdentifier
        /// A dollar-quoted string; `body` is the range between the opening and closing tags.
        case dollarQuoted(body: Range<Int>)
        case lineComment
        case blockComment
    }

    struct Token: Equatable {
        var kind: Kind
        /// Byte offsets into the UTF-8 text.
        var range: Range<Int>
    }

    /// A string, identifier, dollar quote or comment that runs to the end of the text.
    struct Unterminated: Equatable {
        var what: String
        var offset: Int
    }

    private(set) var tokens: [Token] = []
    private(set) var unterminated: Unterminated?

    init(_ bytes: [UInt8]) {
        var index = 0
        var codeStart = 0
        let count = bytes.count

        func flushCode(upTo end: Int) {
            if end > codeStart { tokens.append(Token(kind: .code, range: codeStart..<end)) }
        }

        while index < count {
            let byte = bytes[index]
            let next: UInt8? = index + 1 < count ? bytes[index + 1] : nil
            var special: (Kind, Int, Int)? = nil  // a non-code region: kind, start and end offsets

            switch byte {
            case UInt8(ascii: "'"):
                // E'...' strings take backslash escapes; the E is part of the literal.
                let isEscapeString =
                    index > codeStart && (bytes[index - 1] == UInt8(ascii: "E") || bytes[index - 1] == UInt8(ascii: "e"))
                    && (index < 2 || !Self.isIdentifierByte(bytes[index - 2]))
                let start = isEscapeString ? index - 1 : index
                let end = Self.endOfQuoted(bytes, from: index + 1, quote: UInt8(ascii: "'"), backslashEscapes: isEscapeString)
                if end == nil { unterminated = Unterminated(what: "string literal", offset: start) }
                special = (.stringLiteral, start, end ?? count)
            case UInt8(ascii: "\""):
                let end = Self.endOfQuoted(bytes, from: index + 1, quote: UInt8(ascii: "\""), backslashEscapes: false)
                if end == nil { unterminated = Unterminated(what: "quoted identifier", offset: index) }
                special = (.quotedIdentifier, index, end ?? count)
            case UInt8(ascii: "-") where next == UInt8(ascii: "-"):
                var end = index + 2
                while end < count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
                special = (.lineComment, index, end)
            case UInt8(ascii: "/") where next == UInt8(ascii: "*"):
                var depth = 1
                var end = index + 2
                while end < count && depth > 0 {
                    if bytes[end] == UInt8(ascii: "/") && end + 1 < count && bytes[end + 1] == UInt8(ascii: "*") {
                        depth += 1; end += 2
                    } else if bytes[end] == UInt8(ascii: "*") && end + 1 < count && bytes[end + 1] == UInt8(ascii: "/") {
                        depth -= 1; end += 2
                    } else {
                        end += 1
                    }
                }
                if depth > 0 { unterminated = Unterminated(what: "block comment", offset: index) }
                special = (.blockComment, index, end)
            case UInt8(ascii: "$"):
                if let tagEnd = Self.dollarTagEnd(bytes, at: index) {
                    let tag = bytes[index...tagEnd]
                    let bodyStart = tagEnd + 1
                    if let close = Self.find(tag, in: bytes, from: bodyStart) {
                        special = (.dollarQuoted(body: bodyStart..<close), index, close + tag.count)
                    } else {
                        unterminated = Unterminated(what: "dollar-quoted string", offset: index)
                        special = (.dollarQuoted(body: bodyStart..<count), index, count)
                    }
                }
            default:
                break
            }

            if let (kind, start, end) = special {
                flushCode(upTo: start)
                tokens.append(Token(kind: kind, range: start..<end))
                index = end
                codeStart = end
            } else {
                index += 1
            }
        }
        flushCode(upTo: count)
    }

    /// Bytes that may continue an unquoted identifier (PostgreSQL also allows `$` and non-ASCII).
    static func isIdentifierByte(_ byte: UInt8) -> Bool {
        SQLIdentifier.isIdentifierByte(byte) || byte == UInt8(ascii: "$") || byte >= 0x80
    }

    /// The offset just past the closing quote, or `nil` when the quote is never closed.
    private static func endOfQuoted(_ bytes: [UInt8], from start: Int, quote: UInt8, backslashEscapes: Bool) -> Int? {
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if backslashEscapes && byte == UInt8(ascii: "\\") {
                index += 2
            } else if byte == quote {
                if index + 1 < bytes.count && bytes[index + 1] == quote {
                    index += 2
                } else {
                    return index + 1
                }
            } else {
                index += 1
            }
        }
        return nil
    }

    /// When a dollar quote opens at `index` (`$$` or `$tag$`), the offset of its closing `$`.
    /// `$1` parameters and `$` inside identifiers such as `a$b` are not dollar quotes.
    private static func dollarTagEnd(_ bytes: [UInt8], at index: Int) -> Int? {
        if index > 0 && isIdentifierByte(bytes[index - 1]) { return nil }
        var end = index + 1
        guard end < bytes.count else { return nil }
        if bytes[end] == UInt8(ascii: "$") { return end }
        let first = bytes[end]
        let startsTag =
            (first >= UInt8(ascii: "a") && first <= UInt8(ascii: "z")) || (first >= UInt8(ascii: "A") && first <= UInt8(ascii: "Z"))
            || first == UInt8(ascii: "_") || first >= 0x80
        guard startsTag else { return nil }
        while end < bytes.count {
            let byte = bytes[end]
            if byte == UInt8(ascii: "$") { return end }
            guard SQLIdentifier.isIdentifierByte(byte) || byte >= 0x80 else { return nil }
            end += 1
        }
        return nil
    }

    private static func find(_ needle: ArraySlice<UInt8>, in bytes: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, needle.count <= bytes.count else { return nil }
        var index = start
        let last = bytes.count - needle.count
        while index <= last {
            if bytes[index] == first && bytes[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}
