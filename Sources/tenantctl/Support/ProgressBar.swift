import Foundation
import SchemaDB
import Synchronization
import Tenancy

/// A one-line progress bar on stderr, redrawn at most ten times a second: counts, rate and ETA.
/// Draws nothing when disabled (stderr is not a terminal, or `--json`).
final class ProgressBar: Sendable {
    private struct State {
        var lastDraw: ContinuousClock.Instant?
        var drawn = false
    }

    private let enabled: Bool
    private let state = Mutex(State())

    init(enabled: Bool) {
        self.enabled = enabled
    }

    /// Whether stderr is a terminal.
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    func update(_ progress: FleetProgress) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            if let last = state.lastDraw, now - last < .milliseconds(100), progress.finished < progress.total { return nil }
            state.lastDraw = now
            state.drawn = true
            return Self.render(progress)
        }
        if let line { FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8)) }
    }

    /// Ends the bar's line.
    func finish() {
        guard enabled, state.withLock({ $0.drawn }) else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    static func render(_ progress: FleetProgress, width: Int = 30) -> String {
        let total = max(progress.total, 1)
        let filled = min(width, progress.finished * width / total)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let seconds = Double(progress.elapsed.wholeNanoseconds) / 1e9
        let rate = seconds > 0 ? Double(progress.finished) / seconds : 0
        let remaining = rate > 0 ? Double(progress.total - progress.finished) / rate : 0
        var line = "[\(bar)] \(progress.finished)/\(progress.total)  \(progress.succeeded) migrated  \(progress.skipped) up to date"
        if progress.failed > 0 { line += "  \(progress.failed) failed" }
        line += String(format: "  %.1f/s  ETA %@", rate, formatETA(remaining))
        return line
    }

    private static func formatETA(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        return whole < 60 ? "\(whole)s" : "\(whole / 60)m\(whole % 60)s"
    }
}
