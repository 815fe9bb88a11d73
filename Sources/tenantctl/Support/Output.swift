import Foundation

/// Writes results: one JSON document on stdout with `--json`, aligned text otherwise. Logs,
/// progress and errors go to stderr.
struct Output {
    let json: Bool

    /// Prints `value` as JSON, or the text `human` makes.
    func emit<Value: Encodable>(_ value: Value, human: () -> String) {
        if json {
            print(Self.encode(value))
        } else {
            let text = human()
            if !text.isEmpty { print(text.escapingControlCharacters(keepingNewlines: true)) }
        }
    }

    /// Writes a line to stderr, control characters escaped.
    static func note(_ line: String) {
        FileHandle.standardError.write(Data((line.escapingControlCharacters(keepingNewlines: true) + "\n").utf8))
    }

    static func encode<Value: Encodable>(_ value: Value) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            return #"{"error":{"code":"encoding","message":"the result could not be encoded as JSON"}}"#
        }
    }

    /// `date` as `2026-11-21 09:30:05Z`.
    static func format(_ date: Date?) -> String {
        guard let date else { return "-" }
        return formatter.string(from: date).replacingOccurrences(of: "T", with: " ")
    }

    /// `milliseconds` as `850 ms`, `12.4 s` or `3 min 5 s`.
    static func format(milliseconds: Int?) -> String {
        guard let milliseconds else { return "-" }
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        if milliseconds < 60_000 { return String(format: "%.1f s", Double(milliseconds) / 1000) }
        return "\(milliseconds / 60_000) min \(milliseconds % 60_000 / 1000) s"
    }

    nonisolated(unsafe) private static let formatter = ISO8601DateFormatter()
}

/// A text table with left-aligned columns.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ cells: String...) { rows.append(cells) }

    func render() -> String {
        let rows = rows.map { $0.map { $0.escapingControlCharacters(keepingNewlines: false) } }
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers.map { $0.uppercased() })] + rows.map(line)).joined(separator: "\n")
    }
}

extension String {
    /// The text with control characters (an escape sequence in a display name, say) shown as
    /// `\u{1B}` instead of reaching the terminal, which would run them.
    func escapingControlCharacters(keepingNewlines: Bool) -> String {
        var result = ""
        for scalar in unicodeScalars {
            let isControl = scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
            if !isControl || (keepingNewlines && scalar == "\n") {
                result.unicodeScalars.append(scalar)
            } else {
                result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return result
    }
}
