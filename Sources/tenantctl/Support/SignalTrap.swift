import Dispatch
import Foundation
import Synchronization
import Tenancy

/// Turns the first SIGINT or SIGTERM into a graceful stop of a fleet run (tenants in flight
/// finish, the rest stay pending); a second one ends the process at once.
final class SignalTrap: Sendable {
    private final class FirstSignal: Sendable {
        let number = Atomic<Int32>(0)
    }

    // The sources are only touched in `init`; they are kept so that they stay installed.
    nonisolated(unsafe) private let sources: [any DispatchSourceSignal]
    private let first = FirstSignal()

    init(stop: FleetStop) {
        let first = self.first
        sources = [SIGINT, SIGTERM].map { number in
            Foundation.signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let (isFirst, _) = first.number.compareExchange(expected: 0, desired: number, ordering: .relaxed)
                guard isFirst else { Foundation.exit(128 + number) }
                let name = number == SIGINT ? "SIGINT" : "SIGTERM"
                stop.stop(reason: "stopped by \(name)")
                Output.note("\n\(name): finishing the tenants in flight, the rest stay pending; send it again to quit at once")
            }
            source.resume()
            return source
        }
    }

    /// The first signal received, or `nil`.
    var signal: Int32? {
        let number = first.number.load(ordering: .relaxed)
        return number == 0 ? nil : number
    }
}
