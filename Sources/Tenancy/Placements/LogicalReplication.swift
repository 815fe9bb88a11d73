import Foundation
import PostgresNIO
import SchemaDB

/// The logical replication of one tenant schema for an online move: a publication of its
/// tables and a replication slot on the source, a subscription on the target. Every object is
/// named after the registry and the schema, so that a resumed or rolled-back move finds and
/// drops what an interrupted one left (a slot left behind would keep the source's WAL forever),
/// and reconcile recognises its own fleet's leftovers and no other fleet's.
struct LogicalReplication: Sendable {
    /// The name of the publication, slot and subscription: ``prefix(registryID:)`` and 16 hex
    /// digits of a hash of the schema name (at most 63 bytes, lowercase).
    let name: String

    init(schema: SQLIdentifier, registryID: String) {
        name = Self.prefix(registryID: registryID) + String(UInt64(bitPattern: AdvisoryLockKey.make("tenancy.move", schema.name)), radix: 16)
    }

    /// `tenancy_move_`, 8 hex digits of a hash of the registry's id, and `_`.
    static func prefix(registryID: String) -> String {
        "tenancy_move_" + String(UInt32(truncatingIfNeeded: UInt64(bitPattern: AdvisoryLockKey.make("tenancy.registry", registryID))), radix: 16) + "_"
    }

    /// The replication objects named `name`, as found on a server.
    init(name: String) {
        self.name = name
    }

    /// The name as an SQL identifier.
    private var quoted: String { SQLIdentifier.quote(name) }

    /// Why `schema` on `source` cannot be replicated, or `nil`: the server's `wal_level`, and
    /// tables an `UPDATE` or `DELETE` could not be published for (no primary key or replica identity).
    static func problem(replicating schema: SQLIdentifier, on source: SchemaDatabase) async throws -> String? {
        let level = try await source.fetchValue("SELECT current_setting('wal_level')", as: String.self) ?? "?"
        guard level == "logical" else { return "its server has wal_level = \(level), and an online move needs logical" }
        let unidentified = try await source.fetchAll(
            """
            SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition
              AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
            ORDER BY 1
            """, schema.name, as: String.self)
        guard unidentified.isEmpty else {
            return "tables \(unidentified.prefix(5).joined(separator: ", ")) have no primary key or replica identity, so their updates cannot be replicated"
        }
        return nil
    }

    /// The connection string the target server uses to reach the source: host, port, database,
    /// user and TLS mode, never a password (the target server's own password file or
    /// certificates supply it).
    static func connectionString(for config: DatabaseConfig) -> String {
        func quoted(_ value: String) -> String { "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'" }
        var parts = ["dbname=" + quoted(config.effectiveDatabase), "user=" + quoted(config.user), "sslmode=" + quoted(config.tlsMode.rawValue)]
        if let socket = config.unixSocketPath {
            parts.insert("host=" + quoted((socket as NSString).deletingLastPathComponent), at: 0)
        } else {
            parts.insert("host=" + quoted(config.host), at: 0)
        }
        parts.insert("port=" + quoted(String(config.port)), at: 1)
        return parts.joined(separator: " ")
    }

    /// Publishes `tables` of `schema` on the source and creates the slot the subscription reads
    /// (created apart from the subscription, which would hang when both are on one cluster).
    func start(_ schema: SQLIdentifier, tables: [String], on source: SchemaDatabase) async throws {
        let list = tables.map { "\(schema.quoted).\(SQLIdentifier.quote($0))" }.joined(separator: ", ")
        try await source.execute(try SQLTemplate("CREATE PUBLICATION \(quoted) FOR TABLE \(list)"))
        _ = try await source.fetchAll("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
    }

    /// Subscribes the target to the source's publication: the initial copy starts at once.
    func subscribe(on target: SchemaDatabase, source: DatabaseConfig) async throws {
        let connection = Self.connectionString(for: source).replacingOccurrences(of: "'", with: "''")
        try await target.execute(try SQLTemplate(
            "CREATE SUBSCRIPTION \(quoted) CONNECTION '\(connection)' PUBLICATION \(quoted) WITH (create_slot = false, slot_name = '\(name)', copy_data = true)"))
    }

    /// Waits until every table's initial copy is done and the subscription streams changes.
    /// Fails early when the target server starts no worker for the subscription (none free, or
    /// it cannot reach the source), or when its workers fail `failureLimit` times (a row the
    /// copy refuses fails again on every retry).
    func waitUntilSynchronized(on target: SchemaDatabase, timeout: Duration, workerStartTimeout: Duration = .seconds(30), failureLimit: Int64 = 3) async throws {
        let start = ContinuousClock.now
        let deadline = start + timeout
        var workerSeen = false
        while true {
            if !workerSeen {
                workerSeen = try await target.fetchValue(
                    "SELECT count(*) FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL", name, as: Int64.self) ?? 0 > 0
                if !workerSeen && ContinuousClock.now - start > workerStartTimeout {
                    throw TenancyError(
                        code: .databaseFailed,
                        message: "the target server started no replication worker for the move within \(workerStartTimeout): it may have none free (max_logical_replication_workers, max_worker_processes) or cannot connect to the source; resume the move once it can, roll it back, or move it offline")
                }
            }
            let pending = try await target.fetchValue(
                """
                SELECT count(*) FILTER (WHERE r.srsubstate <> 'r') + (CASE WHEN count(*) = 0 THEN 1 ELSE 0 END)
                FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid WHERE s.subname = $1
                """, name, as: Int64.self) ?? 1
            if pending == 0 { return }
            let failures = try await target.fetchValue(
                "SELECT coalesce(sum(apply_error_count + sync_error_count), 0)::int8 FROM pg_stat_subscription_stats WHERE subname = $1", name, as: Int64.self) ?? 0
            if failures >= failureLimit {
                throw TenancyError(
                    code: .databaseFailed,
                    message: "the target server failed \(failures) times to copy the tenant (its log says why: a trigger or constraint of the copy that refuses a row, or a migration applied during the move); nothing was switched, roll the move back (move --abort) or move it offline")
            }
            guard ContinuousClock.now < deadline else {
                throw TenancyError(
                    code: .databaseFailed,
                    message: "the target did not finish copying the tenant within \(timeout) (\(pending) tables left); check that the target server can connect to the source (its pg_hba.conf, and a password file for the target server's OS user), or move it --offline")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Waits until the subscription has applied and flushed every change up to `position`, a
    /// WAL position of the source.
    func waitUntilApplied(upTo position: String, on source: SchemaDatabase, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await source.fetchValue(
            "SELECT coalesce(confirmed_flush_lsn >= $2::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1", name, position, as: Bool.self) != true {
            guard ContinuousClock.now < deadline else {
                throw TenancyError(code: .databaseFailed, message: "the target did not catch up with the source within \(timeout); nothing was switched and the tenant is served where it was")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Drops the subscription (on the target), and the slot and publication (on the source),
    /// those that exist. `target` is `nil` when the target cannot be reached: its
    /// subscription, if any, then outlives the move and is reported by reconcile.
    func stop(target: SchemaDatabase?, source: SchemaDatabase) async throws {
        if let target, try await target.fetchValue("SELECT count(*) FROM pg_subscription WHERE subname = $1", name, as: Int64.self) ?? 0 > 0 {
            try await target.execute(try SQLTemplate("ALTER SUBSCRIPTION \(quoted) DISABLE"))
            try await target.execute(try SQLTemplate("ALTER SUBSCRIPTION \(quoted) SET (slot_name = NONE)"))
            try await target.execute(try SQLTemplate("DROP SUBSCRIPTION \(quoted)"))
        }
        // A walsender still streaming from the slot (the subscription just went) lets go within moments.
        let deadline = ContinuousClock.now + .seconds(10)
        while try await source.fetchValue("SELECT active FROM pg_replication_slots WHERE slot_name = $1", name, as: Bool.self) == true, ContinuousClock.now < deadline {
            _ = try await source.fetchAll("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active", name)
            try await Task.sleep(for: .milliseconds(50))
        }
        _ = try await source.fetchAll("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name)
        try await source.execute(try SQLTemplate("DROP PUBLICATION IF EXISTS \(quoted)"))
    }
}
