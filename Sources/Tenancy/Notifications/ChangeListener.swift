import Logging
import PostgresNIO
import SchemaDB

/// Keeps a directory in step with the registry across processes: it `LISTEN`s on one
/// connection for the registry's change announcements and evicts the slugs they name.
///
/// The directory drops its whole cache each time listening starts, and again when the
/// connection is lost (while it is down, entries live at most
/// ``TenantDirectory/Configuration/unconfirmedTimeToLive``). A heartbeat on the connection
/// finds a silently dead one within two heartbeat periods.
struct ChangeListener: Sendable {
    let pool: DatabasePool
    let channel: String
    let directory: TenantDirectory
    let logger: Logger
    var heartbeat: Duration = .seconds(5)

    private struct HeartbeatTimedOut: Error {}
    private struct NotificationsEnded: Error {}

    /// Listens until the task is cancelled, reconnecting with backoff.
    func run() async {
        var pause = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await listen { pause = .milliseconds(100) }
            } catch {
                pool.noteConnectionLoss()
                if !Task.isCancelled {
                    logger.info("the connection listening for registry changes was lost; the directory cache was dropped", metadata: [
                        TenancyLoggingKeys.notificationChannel: "\(channel)", LoggingKeys.error: "\(SchemaDBError.wrapping(error, sql: nil, schema: nil))",
                    ])
                }
            }
            directory.listenerStopped()
            guard !Task.isCancelled else { return }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .seconds(5))
        }
    }

    private func listen(onListening: () -> Void) async throws {
        try await pool.withOpenConnection { connection in
            try await connection.listen(on: channel) { notifications in
                directory.listenerStarted()
                onListening()
                logger.debug("listening for registry changes", metadata: [TenancyLoggingKeys.notificationChannel: "\(channel)"])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await notification in notifications { directory.apply(announcement: notification.payload) }
                        throw NotificationsEnded()
                    }
                    group.addTask { try await beat(connection) }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            }
        }
    }

    /// Runs `SELECT 1` every heartbeat; a reply that does not come within a heartbeat closes
    /// the connection, which ends the listening.
    private func beat(_ connection: PostgresConnection) async throws {
        while true {
            try await Task.sleep(for: heartbeat)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // A query written to a closed connection is never answered: do not write one.
                    guard !connection.isClosed else { throw HeartbeatTimedOut() }
                    _ = try await connection.query("SELECT 1", logger: logger).collect()
                }
                group.addTask {
                    try await Task.sleep(for: heartbeat)
                    try? await connection.close()
                    throw HeartbeatTimedOut()
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }
}
