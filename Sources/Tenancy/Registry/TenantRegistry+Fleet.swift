import Foundation
import GRDB

/// The fleet-run ledger: one row per run, one item per tenant, written as the run goes.
extension TenantRegistry {
    // MARK: - Reading

    /// The most recent runs, newest first.
    public func fleetRuns(limit: Int = 20) async throws -> [FleetRun] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.runColumns) FROM fleet_runs ORDER BY id DESC LIMIT ?", arguments: [limit])
                .map { try Self.fleetRun(from: $0, db: db) }
        }
    }

    /// The run `id`, or `nil`.
    public func fleetRun(id: Int64) async throws -> FleetRun? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.runColumns) FROM fleet_runs WHERE id = ?", arguments: [id])
                .map { try Self.fleetRun(from: $0, db: db) }
        }
    }

    /// The items of run `runID` in run order, optionally only those in `statuses`.
    public func fleetRunItems(runID: Int64, statuses: Set<FleetRunItem.Status>? = nil) async throws -> [FleetRunItem] {
        try await read { db in
            var sql = """
                SELECT i.tenant_id, t.slug, t.schema_name, i.position, i.status, i.attempts, i.error, i.duration_ms,
                       i.files_applied, i.started_at, i.finished_at
                FROM fleet_run_items i JOIN tenants t ON t.id = i.tenant_id WHERE i.run_id = ?
                """
            var arguments: StatementArguments = [runID]
            if let statuses {
                sql += " AND i.status IN (\(statuses.map { _ in "?" }.joined(separator: ", ")))"
                for status in statuses { arguments += [status.rawValue] }
            }
            return try Row.fetchAll(db, sql: sql + " ORDER BY i.position", arguments: arguments).map(Self.fleetItem(from:))
        }
    }

    /// Every tenant and spare a fleet run over all tenants migrates: active and suspended
    /// tenants in slug order, then spares oldest first.
    func fleetCandidates() async throws -> [TenantRow] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(TenantRow.columns) FROM tenants
                WHERE state IN ('active', 'suspended', 'spare') ORDER BY slug IS NULL, slug, id
                """).map(TenantRow.init(row:))
        }
    }

    /// The tenants with these slugs, in the order given.
    /// - Throws: ``TenancyError`` for an unknown slug, or one whose tenant has no schema to migrate.
    func fleetCandidates(slugs: [TenantSlug]) async throws -> [TenantRow] {
        try await read { db in
            try slugs.map { slug in
                guard let row = try Row.fetchOne(db, sql: "SELECT \(TenantRow.columns) FROM tenants WHERE slug = ?", arguments: [slug.rawValue]) else {
                    throw TenancyError.notFound(slug.rawValue)
                }
                let candidate = TenantRow(row: row)
                guard candidate.state == .active || candidate.state == .suspended else {
                    throw TenancyError(code: candidate.state == .deleted ? .tenantDeleted : .illegalTransition,
                                       message: "tenant \"\(slug)\" is \(candidate.state.rawValue) and has no schema to migrate; leave it out", slug: slug.rawValue)
                }
                return candidate
            }
        }
    }

    // MARK: - Writing

    /// Records a new run over `tenantIDs`, in that order, all pending. Runs of this registry
    /// still marked `running` are marked `interrupted`: the caller holds the fleet lock, so
    /// their processes are gone.
    func beginFleetRun(tenantIDs: [Int64], target: MigrationLevel?, parameters: String) async throws -> Int64 {
        try await write { db in
            try Self.interruptAbandonedRuns(db)
            try db.execute(sql: "INSERT INTO fleet_runs (started_at, status, target_file, target_checksum, parameters) VALUES (?, 'running', ?, ?, ?)",
                           arguments: [Date().timeIntervalSince1970, target?.lastFile, target?.setChecksum, parameters])
            let runID = db.lastInsertedRowID
            let insert = try db.makeStatement(sql: "INSERT INTO fleet_run_items (run_id, tenant_id, position, status) VALUES (?, ?, ?, 'pending')")
            for (position, id) in tenantIDs.enumerated() {
                try insert.execute(arguments: [runID, id, position])
            }
            return runID
        }
    }

    /// Reopens run `id` for a resume: its failed items and those left running by a dead process
    /// become pending again.
    /// - Returns: The tenant ids to retry, in run order.
    func reopenFleetRun(id: Int64, target: MigrationLevel?) async throws -> [Int64] {
        try await write { db in
            try Self.interruptAbandonedRuns(db)
            try db.execute(sql: "UPDATE fleet_run_items SET status = 'pending' WHERE run_id = ? AND status IN ('failed', 'running')", arguments: [id])
            try db.execute(sql: "UPDATE fleet_runs SET status = 'running', finished_at = NULL, error = NULL, target_file = ?, target_checksum = ? WHERE id = ?",
                           arguments: [target?.lastFile, target?.setChecksum, id])
            return try Int64.fetchAll(db, sql: "SELECT tenant_id FROM fleet_run_items WHERE run_id = ? AND status = 'pending' ORDER BY position", arguments: [id])
        }
    }

    /// Marks an item running and counts the attempt.
    /// - Returns: The item's position and attempts, and the tenant's row now (`nil` when it is gone).
    func startFleetItem(runID: Int64, tenantID: Int64) async throws -> (position: Int, attempts: Int, tenant: TenantRow?) {
        try await write { db in
            try db.execute(sql: "UPDATE fleet_run_items SET status = 'running', attempts = attempts + 1, started_at = ?, finished_at = NULL, error = NULL WHERE run_id = ? AND tenant_id = ?",
                           arguments: [Date().timeIntervalSince1970, runID, tenantID])
            let item = try Row.fetchOne(db, sql: "SELECT position, attempts FROM fleet_run_items WHERE run_id = ? AND tenant_id = ?", arguments: [runID, tenantID])
            let tenant = try Row.fetchOne(db, sql: "SELECT \(TenantRow.columns) FROM tenants WHERE id = ?", arguments: [tenantID])
                .map(TenantRow.init(row:))
            return (item?[0] ?? 0, item?[1] ?? 0, tenant)
        }
    }

    /// Records how an item ended and, when the tenant reached `level`, its new migration level,
    /// in one transaction.
    func finishFleetItem(runID: Int64, tenantID: Int64, status: FleetRunItem.Status, error: String?, durationMilliseconds: Int, filesApplied: [String], level: MigrationLevel?) async throws {
        try await write { db in
            try db.execute(
                sql: "UPDATE fleet_run_items SET status = ?, error = ?, duration_ms = ?, files_applied = ?, finished_at = ? WHERE run_id = ? AND tenant_id = ?",
                arguments: [status.rawValue, error, durationMilliseconds, filesApplied.joined(separator: "\n"), Date().timeIntervalSince1970, runID, tenantID])
            if let level {
                try db.execute(sql: "UPDATE tenants SET migration_file = ?, migration_checksum = ?, updated_at = ? WHERE id = ?",
                               arguments: [level.lastFile, level.setChecksum, Date().timeIntervalSince1970, tenantID])
            }
            if !filesApplied.isEmpty {
                try Self.log(db, tenantID: tenantID, kind: "migrated", detail: "run \(runID): \(filesApplied.joined(separator: ", "))")
            }
        }
    }

    /// Records how a run ended.
    func finishFleetRun(id: Int64, status: FleetRun.Status, error: String?) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE fleet_runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                           arguments: [status.rawValue, error, Date().timeIntervalSince1970, id])
        }
    }

    // MARK: - Internals

    private static let runColumns = "id, status, started_at, finished_at, target_file, target_checksum, parameters, error"

    private static func interruptAbandonedRuns(_ db: Database) throws {
        try db.execute(sql: "UPDATE fleet_runs SET status = 'interrupted', finished_at = ?, error = 'its process stopped before the run finished' WHERE status = 'running'",
                       arguments: [Date().timeIntervalSince1970])
    }

    private static func fleetRun(from row: Row, db: Database) throws -> FleetRun {
        let id: Int64 = row[0]
        var counts = FleetRun.Counts()
        for count in try Row.fetchAll(db, sql: "SELECT status, count(*) FROM fleet_run_items WHERE run_id = ? GROUP BY status", arguments: [id]) {
            let n: Int = count[1]
            counts.total += n
            switch FleetRunItem.Status(rawValue: count[0]) {
            case .pending: counts.pending = n
            case .running: counts.running = n
            case .succeeded: counts.succeeded = n
            case .failed: counts.failed = n
            case .skipped: counts.skipped = n
            case nil: break
            }
        }
        return FleetRun(
            id: id, status: FleetRun.Status(rawValue: row[1]) ?? .interrupted, startedAt: Date(timeIntervalSince1970: row[2]),
            finishedAt: (row[3] as Double?).map(Date.init(timeIntervalSince1970:)), target: level(file: row[4], checksum: row[5]),
            parameters: row[6], error: row[7], counts: counts)
    }

    private static func fleetItem(from row: Row) -> FleetRunItem {
        let files: String? = row[8]
        return FleetRunItem(
            tenantID: row[0], slug: row[1], schema: row[2], position: row[3], status: FleetRunItem.Status(rawValue: row[4]) ?? .pending,
            attempts: row[5], error: row[6], durationMilliseconds: row[7],
            filesApplied: files.map { $0.isEmpty ? [] : $0.components(separatedBy: "\n") } ?? [],
            startedAt: (row[9] as Double?).map(Date.init(timeIntervalSince1970:)), finishedAt: (row[10] as Double?).map(Date.init(timeIntervalSince1970:)))
    }
}
