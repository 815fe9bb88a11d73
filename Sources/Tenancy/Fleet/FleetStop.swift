import Synchronization

/// Asks a fleet run to stop: tenants in flight finish, the others stay pending, and the run is
/// recorded as ``FleetRun/Status/interrupted`` so it can be resumed.
///
/// Cancelling the task running the fleet, or a graceful shutdown of its `ServiceGroup`, stops
/// it the same way.
public final class FleetStop: Sendable {
    private let reason = Mutex<String?>(nil)

    public init() {}

    /// Stops the run between tenants. The first reason given is kept.
    public func stop(reason: String = "stopped on request") {
        self.reason.withLock { if $0 == nil { $0 = reason } }
    }

    /// Whether ``stop(reason:)`` was called.
    public var isStopped: Bool { reason.withLock { $0 != nil } }

    /// Why the run was stopped.
    public var stopReason: String? { reason.withLock { $0 } }
}
