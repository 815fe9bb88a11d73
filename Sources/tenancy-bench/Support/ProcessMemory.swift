import CHeapStatistics
import Foundation

/// Memory readings of this process (Linux).
enum ProcessMemory {
    /// The peak resident set size (`VmHWM`), in bytes.
    static var peakResidentBytes: Int? { statusField("VmHWM") }

    /// The resident set size now (`VmRSS`), in bytes.
    static var residentBytes: Int? { statusField("VmRSS") }

    /// Bytes allocated by `malloc` and not yet freed: what the heap holds, whatever the allocator
    /// keeps cached.
    static var allocatedBytes: Int? {
        let bytes = heap_allocated_bytes()
        return bytes == 0 ? nil : Int(bytes)
    }

    private static func statusField(_ name: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            let kilobytes = line.dropFirst(name.count + 1).split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
            return kilobytes.map { $0 * 1024 }
        }
        return nil
    }
}
