import PostgresNIO
import Synchronization

/// The caller of one statement, resumed once: by the answer, or by the watch on its connection.
private final class PendingAnswer<Result: Sendable>: Sendable {
    private let waiting = Mutex<CheckedContinuation<Result, any Error>?>(nil)

    func wait(_ continuation: CheckedContinuation<Result, any Error>) { waiting.withLock { $0 = continuation } }

    var isWaiting: Bool { waiting.withLock { $0 != nil } }

    func finish(_ result: Swift.Result<Result, any Error>) {
        waiting.withLock { continuation in
            defer { continuation = nil }
            return continuation
        }?.resume(with: result)
    }
}

extension PostgresConnection {
    /// Runs `operation` (a statement on this connection) and fails with `connectionFailed` soon
    /// after the connection closes: postgres-nio never answers a statement written to a
    /// connection at the moment it closes, and its caller would wait for ever. The connection
    /// is looked at every quarter of a second while the statement runs.
    func answering<Result: Sendable>(_ operation: @escaping @Sendable () async throws -> Result) async throws -> Result {
        let pending = PendingAnswer<Result>()
        return try await withCheckedThrowingContinuation { continuation in
            pending.wait(continuation)
            let work = Task {
                do { pending.finish(.success(try await operation())) } catch { pending.finish(.failure(error)) }
            }
            Task { [connection = self] in
                while pending.isWaiting {
                    try? await Task.sleep(for: .milliseconds(250))
                    guard connection.isClosed, pending.isWaiting else { continue }
                    // An answer that arrived with the close gets a moment to be delivered.
                    try? await Task.sleep(for: .milliseconds(100))
                    pending.finish(.failure(SchemaDBError(code: .connectionFailed, message: "the connection to the server closed before the statement was answered")))
                    work.cancel()
                }
            }
        }
    }
}
