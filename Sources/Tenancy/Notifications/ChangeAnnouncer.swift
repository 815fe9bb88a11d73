import Logging
import SchemaDB

/// Announces the changes of a registry that PostgreSQL is not part of (the SQLite store) with
/// `pg_notify`, right after each change commits.
///
/// An announcement that cannot be sent is logged; the directories of other processes then
/// see the change when their entries expire, and a released slug stays unavailable longer
/// than any entry lives, so no request reaches another tenant's schema.
final class ChangeAnnouncer: Sendable {
    private let pool: DatabasePool
    private let channel: String
    private let logger: Logger

    init(pool: DatabasePool, channel: String, logger: Logger) {
        self.pool = pool
        self.channel = channel
        self.logger = logger
    }

    func announce(_ payload: String) async {
        do {
            _ = try await pool.database(schema: nil).fetchAll("SELECT pg_notify($1, $2)", channel, payload)
        } catch {
            logger.info("a registry change could not be announced; other processes see it when their cached entries expire", metadata: [
                TenancyLoggingKeys.notificationChannel: "\(channel)", LoggingKeys.error: "\(error)",
            ])
        }
    }
}
