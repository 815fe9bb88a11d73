public import Foundation

/// A value that can be sent in a bulk copy (`COPY ... FROM STDIN`), in PostgreSQL's text format.
public protocol CopyValue: Sendable {
    /// The value as PostgreSQL's text input syntax for its column type, before COPY escaping.
    var copyText: String { get }
}

extension String: CopyValue { public var copyText: String { self } }
extension Substring: CopyValue { public var copyText: String { String(self) } }
extension Int: CopyValue { public var copyText: String { String(self) } }
extension Int16: CopyValue { public var copyText: String { String(self) } }
extension Int32: CopyValue { public var copyText: String { String(self) } }
extension Int64: CopyValue { public var copyText: String { String(self) } }
extension Double: CopyValue { public var copyText: String { self.isFinite ? "\(self)" : (self.isNaN ? "NaN" : (self > 0 ? "Infinity" : "-Infinity")) } }
extension Float: CopyValue { public var copyText: String { Double(self).copyText } }
extension Bool: CopyValue { public var copyText: String { self ? "t" : "f" } }
extension UUID: CopyValue { public var copyText: String { uuidString } }
extension Decimal: CopyValue { public var copyText: String { "\(self)" } }

extension Date: CopyValue {
    /// ISO 8601 in UTC with microseconds, accepted by `timestamptz` and `timestamp` columns.
    public var copyText: String {
        let microseconds = (timeIntervalSince1970 * 1_000_000).rounded()
        let seconds = Int64((microseconds / 1_000_000).rounded(.down))
        let fraction = Int64(microseconds) - seconds * 1_000_000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(
            format: "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), fraction)
    }
}

enum CopyTextFormat {
    /// Appends one row in COPY text format: tab-separated, `\N` for NULL, a newline at the end.
    static func append(_ row: [(any CopyValue)?], to output: inout String) {
        for (index, value) in row.enumerated() {
            if index > 0 { output += "\t" }
            guard let value else {
                output += "\\N"
                continue
            }
            let text = value.copyText
            if text.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                for scalar in text.unicodeScalars {
                    switch scalar {
                    case "\\": output += "\\\\"
                    case "\t": output += "\\t"
                    case "\n": output += "\\n"
                    case "\r": output += "\\r"
                    default: output.unicodeScalars.append(scalar)
                    }
                }
            } else {
                output += text
            }
        }
        output += "\n"
    }
}
