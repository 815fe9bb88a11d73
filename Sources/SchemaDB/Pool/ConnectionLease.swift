import PostgresNIO
import Synchronization

/// A pooled connection leased by a task of its own and lent to the caller, so that the wait
/// for it can be bounded: postgres-nio queues a lease for as long as its pool keeps failing to
/// connect (about a minute), and a caller has no other way to give up earlier.
final class ConnectionLease: Sendable {
    private enum Handoff {
        case empty
        case waiting(CheckedContinuation<PostgresConnection, any Error>)
        case resolved(Result<PostgresConnection, any Error>)
        case taken
    }

    private let handoff = Mutex(Handoff.empty)
    private let released = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    /// Hands `result` to the caller; `false` when it had already been given a result.
    @discardableResult
    func resolve(_ result: Result<PostgresConnection, any Error>) -> Bool {
        let (accepted, waiter) = handoff.withLock { state -> (Bool, CheckedContinuation<PostgresConnection, any Error>?) in
            switch state {
            case .empty:
                state = .resolved(result)
                return (true, nil)
            case .waiting(let continuation):
                state = .taken
                return (true, continuation)
            case .resolved, .taken:
                return (false, nil)
            }
        }
        waiter?.resume(with: result)
        return accepted
    }

    /// The connection, or why there is none.
    func connection() async throws -> PostgresConnection {
        try await withCheckedThrowingContinuation { continuation in
            let ready = handoff.withLock { state -> Result<PostgresConnection, any Error>? in
                if case .resolved(let result) = state {
                    state = .taken
                    return result
                }
                state = .waiting(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// Waits, in the leasing task, until the caller is done with the connection.
    func waitUntilReleased() async {
        await withCheckedContinuation { continuation in
            let done = released.withLock { state -> Bool in
                if state.done { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Gives the connection back to the pool.
    func release() {
        let waiter = released.withLock { state -> CheckedContinuation<Void, Never>? in
            state.done = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
