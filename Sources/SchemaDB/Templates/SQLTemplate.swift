import Synchronization

/// SQL with schema placeholders, parsed once and rendered for any schema.
///
/// | Placeholder | With schema `acme` | With no schema |
/// |---|---|---|
/// | `{{tables.users}}` | `"acme"."users"` | `"users"` |
/// | `{{tables.billing.plans}}` | `"billing"."plans"` | `"billing"."plans"` |
/// | `{{schema}}` | `"acme"` | an error |
///
/// Placeholders are substituted in SQL code and in dollar-quoted bodies (`$$ ... $$`), never inside
/// single-quoted string literals, quoted identifiers or comments. An unknown or malformed
/// placeholder is an error that names it.
///
/// A template written as a string literal is parsed on first use and the result cached for the
/// life of the process, so queries in a hot path are parsed once, not on every call.
public struct SQLTemplate: Sendable, Hashable, ExpressibleByStringLiteral {
    /// The template text as written.
    public let sql: String
    private let parsed: Parsed

    /// Parses `sql`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidTemplate`` naming the
    ///   first unknown or malformed placeholder.
    public init(_ sql: String) throws {
        self.sql = sql
        self.parsed = Self.cachedParse(sql)
        if case .invalid(let error) = self.parsed.storage { throw error }
    }

    /// Parses a literal. A malformed placeholder is reported when the template is rendered.
    public init(stringLiteral sql: String) {
        self.sql = sql
        self.parsed = Self.cachedParse(sql)
    }

    /// Renders the template for `schema`, or with unqualified names when `schema` is `nil`.
    public func render(schema: SQLIdentifier?) throws -> String {
        switch parsed.storage {
        case .invalid(let error):
            throw error
        case .plain:
            return sql
        case .segments(let segments, let capacity):
            var result = String()
            result.reserveCapacity(capacity + 2 * (schema?.quoted.utf8.count ?? 0))
            for segment in segments {
                switch segment {
                case .literal(let text):
                    result += text
                case .table(let table):
                    if let schema {
                        result += schema.quoted
                        result += "."
                    }
                    result += table.quoted
                case .qualifiedTable(let otherSchema, let table):
                    result += otherSchema.quoted
                    result += "."
                    result += table.quoted
                case .schema:
                    guard let schema else { throw SchemaDBError.schemaPlaceholderWithoutSchema(sql) }
                    result += schema.quoted
                }
            }
            return result
        }
    }

    /// Whether the SQL code (outside strings and comments) has a `RETURNING` clause.
    var hasReturningClause: Bool { parsed.hasReturningClause }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.sql == rhs.sql }
    public func hash(into hasher: inout Hasher) { hasher.combine(sql) }
}

extension SQLTemplate: CustomStringConvertible {
    public var description: String { sql }
}

// MARK: - Parsing

extension SQLTemplate {
    enum Segment: Sendable {
        case literal(String)
        case table(SQLIdentifier)
        case qualifiedTable(SQLIdentifier, SQLIdentifier)
        case schema
    }

    struct Parsed: Sendable {
        enum Storage: Sendable {
            /// No placeholders: the text renders as is.
            case plain
            /// Literal text and placeholders; `capacity` is the rendered size minus schema names.
            case segments([Segment], capacity: Int)
            case invalid(SchemaDBError)
        }
        var storage: Storage
        var hasReturningClause: Bool
    }

    /// Parsed templates by text. Bounded: when full it is emptied and refilled by use.
    private static let cache = Mutex<[String: Parsed]>([:])
    static let cacheCapacity = 4096

    private static func cachedParse(_ sql: String) -> Parsed {
        if let hit = cache.withLock({ $0[sql] }) { return hit }
        let parsed = parse(sql)
        cache.withLock { cache in
            if cache.count >= cacheCapacity { cache.removeAll(keepingCapacity: true) }
            cache[sql] = parsed
        }
        return parsed
    }

    static func parse(_ sql: String) -> Parsed {
        let bytes = Array(sql.utf8)
        let lexer = SQLLexer(bytes)
        var segments: [Segment] = []
        var literalStart = 0
        var capacity = 0
        var hasReturning = false

        func appendLiteral(upTo end: Int) {
            guard end > literalStart else { return }
            segments.append(.literal(String(decoding: bytes[literalStart..<end], as: UTF8.self)))
            capacity += end - literalStart
        }

        for token in lexer.tokens {
            let searchRange: Range<Int>
            switch token.kind {
            case .code:
                searchRange = token.range
                if !hasReturning { hasReturning = containsWord("RETURNING", in: bytes[token.range]) }
            case .dollarQuoted(let body):
                searchRange = body
            default:
                continue
            }
            var index = searchRange.lowerBound
            while index + 1 < searchRange.upperBound {
                guard bytes[index] == UInt8(ascii: "{") && bytes[index + 1] == UInt8(ascii: "{") else {
                    index += 1
                    continue
                }
                guard let close = findClose(bytes, from: index + 2, before: searchRange.upperBound) else {
                    let shown = String(decoding: bytes[index..<min(searchRange.upperBound, index + 40)], as: UTF8.self)
                    return Parsed(storage: .invalid(.invalidTemplate(sql, placeholder: shown, "it is not closed with }}")), hasReturningClause: hasReturning)
                }
                let inner = String(decoding: bytes[(index + 2)..<close], as: UTF8.self)
                let placeholder = "{{" + inner + "}}"
                switch parsePlaceholder(inner) {
                case .success(let segment):
                    appendLiteral(upTo: index)
                    segments.append(segment)
                    if case .qualifiedTable(let schema, let table) = segment {
                        capacity += schema.quoted.utf8.count + table.quoted.utf8.count + 1
                    } else if case .table(let table) = segment {
                        capacity += table.quoted.utf8.count + 1
                    }
                    index = close + 2
                    literalStart = index
                case .failure(let problem):
                    return Parsed(storage: .invalid(.invalidTemplate(sql, placeholder: placeholder, problem.reason)), hasReturningClause: hasReturning)
                }
            }
        }
        if segments.isEmpty {
            return Parsed(storage: .plain, hasReturningClause: hasReturning)
        }
        appendLiteral(upTo: bytes.count)
        return Parsed(storage: .segments(segments, capacity: capacity), hasReturningClause: hasReturning)
    }

    private struct PlaceholderProblem: Error { var reason: String }

    private static func parsePlaceholder(_ inner: String) -> Result<Segment, PlaceholderProblem> {
        let trimmed = inner.trimmingWhitespace()
        if trimmed == "schema" { return .success(.schema) }
        let parts = trimmed.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.first == "tables" else {
            return .failure(PlaceholderProblem(reason: "the known placeholders are {{tables.NAME}}, {{tables.SCHEMA.NAME}} and {{schema}}"))
        }
        do {
            switch parts.count {
            case 2:
                return .success(.table(try SQLIdentifier(parts[1])))
            case 3:
                return .success(.qualifiedTable(try SQLIdentifier(parts[1]), try SQLIdentifier(parts[2])))
            default:
                return .failure(PlaceholderProblem(reason: "expected {{tables.NAME}} or {{tables.SCHEMA.NAME}}"))
            }
        } catch let error as SchemaDBError {
            return .failure(PlaceholderProblem(reason: error.message))
        } catch {
            return .failure(PlaceholderProblem(reason: "\(error)"))
        }
    }

    private static func findClose(_ bytes: [UInt8], from start: Int, before end: Int) -> Int? {
        var index = start
        while index + 1 < end {
            if bytes[index] == UInt8(ascii: "}") && bytes[index + 1] == UInt8(ascii: "}") { return index }
            // A placeholder never spans lines or contains another opening brace.
            if bytes[index] == UInt8(ascii: "\n") || bytes[index] == UInt8(ascii: "{") { return nil }
            index += 1
        }
        return nil
    }

    private static func containsWord(_ word: StaticString, in bytes: ArraySlice<UInt8>) -> Bool {
        let target = Array(UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
        var index = bytes.startIndex
        while index + target.count <= bytes.endIndex {
            let before = index > bytes.startIndex ? bytes[index - 1] : UInt8(ascii: " ")
            if !SQLLexer.isIdentifierByte(before) {
                var matches = true
                for offset in 0..<target.count where bytes[index + offset] & 0xDF != target[offset] {
                    matches = false
                    break
                }
                let afterIndex = index + target.count
                if matches && (afterIndex == bytes.endIndex || !SQLLexer.isIdentifierByte(bytes[afterIndex])) {
                    return true
                }
            }
            index += 1
        }
        return false
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
