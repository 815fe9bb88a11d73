import Foundation
import GRDB
import SchemaDB

/// The fleet-run ledger and copying, in the SQLite registry.
extension SQLiteRegistryStore {
    func beginFleetRun(tenantIDs: [Int64], target: MigrationLevel?, parameters: String) async throws -> Int64 {
        let now = Date()
        return try await write { db in
            try Self.interruptAbandonedRuns(db, at: now)
            try FleetRunRecord(id: nil, startedAt: now, finishedAt: nil, status: .running, target: target, parameters: parameters, error: nil).insert(db)
            let runID = db.lastInsertedRowID
            let insert = try db.makeStatement(sql: "INSERT INTO fleet_run_items (run_id, tenant_id, position, status) VALUES (?, ?, ?, 'pending')")
            for (position, id) in tenantIDs.enumerated() {
                try insert.execute(arguments: [runID, id, position])
            }
            return runID
        }
    }

    func reopenFleetRun(id: Int64, target: MigrationLevel?) async throws -> [Int64] {
        let now = Date()
        return try await write { db in
            try Self.interruptAbandonedRuns(db, at: now)
            try db.execute(sql: "UPDATE fleet_run_items SET status = 'pending' WHERE run_id = ? AND status IN ('failed', 'running')", arguments: [id])
            try db.execute(sql: "UPDATE fleet_runs SET status = 'running', finished_at = NULL, error = NULL, target_file = ?, target_checksum = ? WHERE id = ?",
                           arguments: [target?.lastFile, target?.setChecksum, id])
            return try Int64.fetchAll(db, sql: "SELECT tenant_id FROM fleet_run_items WHERE run_id = ? AND status = 'pending' ORDER BY position", arguments: [id])
        }
    }

    func startFleetItem(runID: Int64, tenantID: Int64) async throws -> (position: Int, attempts: Int, tenant: TenantRecord?) {
        let now = Date()
        return try await write { db in
            try db.execute(sql: "UPDATE fleet_run_items SET status = 'running', attempts = attempts + 1, started_at = ?, finished_at = NULL, error = NULL WHERE run_id = ? AND tenant_id = ?",
                           arguments: [now.timeIntervalSince1970, runID, tenantID])
            let item = try FleetRunItemRecord.fetchOne(db, key: ["run_id": runID, "tenant_id": tenantID])
            return (item?.position ?? 0, item?.attempts ?? 0, try TenantRecord.fetchOne(db, key: tenantID))
        }
    }

    func finishFleetItem(runID: Int64, tenantID: Int64, status: FleetRunItem.Status, error: String?, durationMilliseconds: Int, filesApplied: [String], level: MigrationLevel?) async throws {
        let now = Date()
        try await write { db in
            try db.execute(
                sql: "UPDATE fleet_run_items SET status = ?, error = ?, duration_ms = ?, files_applied = ?, finished_at = ? WHERE run_id = ? AND tenant_id = ?",
                arguments: [status.rawValue, error, durationMilliseconds, filesApplied.joined(separator: "\n"), now.timeIntervalSince1970, runID, tenantID])
            let recorded = try String.fetchOne(db, sql: "SELECT migration_file FROM tenants WHERE id = ?", arguments: [tenantID])
            if let level, !(recorded.map(level.precedes(file:)) ?? false) {
                try db.execute(sql: "UPDATE tenants SET migration_file = ?, migration_checksum = ?, updated_at = ? WHERE id = ?",
                               arguments: [level.lastFile, level.setChecksum, now.timeIntervalSince1970, tenantID])
            }
            if !filesApplied.isEmpty {
                try Self.log(db, tenantID: tenantID, kind: .migrated, detail: "run \(runID): \(filesApplied.joined(separator: ", "))", at: now)
            }
        }
    }

    func finishFleetRun(id: Int64, status: FleetRun.Status, error: String?) async throws {
        let now = Date()
        try await write { db in
            // Only a run still running: one that another process found abandoned (its fleet lock
            // was lost) keeps the record that process wrote.
            try db.execute(sql: "UPDATE fleet_runs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'running'",
                           arguments: [status.rawValue, error, now.timeIntervalSince1970, id])
        }
    }

    func fleetRuns(limit: Int) async throws -> [FleetRun] {
        try await read { db in
            try FleetRunRecord.order(FleetRunRecord.Columns.id.desc).limit(limit).fetchAll(db).map { try Self.run($0, db) }
        }
    }

    func fleetRun(id: Int64) async throws -> FleetRun? {
        try await read { db in try FleetRunRecord.fetchOne(db, key: id).map { try Self.run($0, db) } }
    }

    func fleetRunItems(runID: Int64, statuses: Set<FleetRunItem.Status>?) async throws -> [FleetRunItem] {
        try await read { db in
            var sql = "SELECT i.*, t.slug AS tenant_slug, t.schema_name AS tenant_schema FROM fleet_run_items i JOIN tenants t ON t.id = i.tenant_id WHERE i.run_id = ?"
            var arguments: StatementArguments = [runID]
            if let statuses {
                sql += " AND i.status IN (\(statuses.map { _ in "?" }.joined(separator: ", ")))"
                for status in statuses { arguments += [status.rawValue] }
            }
            return try Row.fetchAll(db, sql: sql + " ORDER BY i.position", arguments: arguments).map { row in
                FleetRunItemRecord(row: row).item(slug: row["tenant_slug"], schema: row["tenant_schema"])
            }
        }
    }

    private static func interruptAbandonedRuns(_ db: Database, at now: Date) throws {
        try db.execute(sql: "UPDATE fleet_runs SET status = 'interrupted', finished_at = ?, error = 'its process stopped before the run finished' WHERE status = 'running'",
                       arguments: [now.timeIntervalSince1970])
    }

    private static func run(_ record: FleetRunRecord, _ db: Database) throws -> FleetRun {
        var counts = FleetRun.Counts()
        for row in try Row.fetchAll(db, sql: "SELECT status, count(*) FROM fleet_run_items WHERE run_id = ? GROUP BY status", arguments: [record.id]) {
            if let status = FleetRunItem.Status(rawValue: row[0]) { counts.add(status, row[1]) }
        }
        return record.run(counts: counts)
    }

    // MARK: - Copying

    func snapshot() async throws -> RegistrySnapshot {
        let info = try await prepare(creating: false)
        return try await read { db in
            let runs = try FleetRunRecord.order(FleetRunRecord.Columns.id).fetchAll(db).map { try Self.run($0, db) }
            let items = try Row.fetchAll(db, sql: "SELECT i.*, t.slug AS tenant_slug, t.schema_name AS tenant_schema FROM fleet_run_items i JOIN tenants t ON t.id = i.tenant_id ORDER BY i.run_id, i.position")
                .map { row in
                    let record = FleetRunItemRecord(row: row)
                    return RegistrySnapshot.Item(runID: record.runID, item: record.item(slug: row["tenant_slug"], schema: row["tenant_schema"]))
                }
            return RegistrySnapshot(
                info: info,
                placements: try Self.placements(db),
                tenants: try TenantRecord.order(TenantRecord.Columns.id).fetchAll(db),
                events: try TenantEventRecord.order(TenantEventRecord.Columns.id).fetchAll(db).map {
                    .init(id: $0.id ?? 0, tenantID: $0.tenantID, at: $0.at, kind: $0.kind, detail: $0.detail)
                },
                releasedSlugs: try ReleasedSlugRecord.fetchAll(db).map { .init(slug: $0.slug, tenantID: $0.tenantID, releasedAt: $0.releasedAt) },
                runs: runs, items: items)
        }
    }

    func restore(_ snapshot: RegistrySnapshot) async throws {
        let location = self.location
        try await write { db in
            guard try TenantRecord.fetchCount(db) == 0, try FleetRunRecord.fetchCount(db) == 0 else {
                throw TenancyError(code: .invalidArgument, message: "the registry \(location) is not empty; copy into a new registry")
            }
            for placement in snapshot.placements { try Self.insert(placement, db) }
            for tenant in snapshot.tenants { try tenant.insert(db) }
            for event in snapshot.events {
                try TenantEventRecord(id: event.id, tenantID: event.tenantID, at: event.at, kind: event.kind, detail: event.detail).insert(db)
            }
            for released in snapshot.releasedSlugs {
                try ReleasedSlugRecord(slug: released.slug, tenantID: released.tenantID, releasedAt: released.releasedAt).insert(db)
            }
            for run in snapshot.runs {
                try FleetRunRecord(id: run.id, startedAt: run.startedAt, finishedAt: run.finishedAt, status: run.status, target: run.target,
                                   parameters: run.parameters, error: run.error).insert(db)
            }
            for item in snapshot.items { try FleetRunItemRecord(runID: item.runID, item: item.item).insert(db) }
            let info = snapshot.info
            var meta = [(RegistryMeta.id, info.id), (RegistryMeta.slugReuseDelay, String(info.slugReuseDelay.wholeMilliseconds))]
            if let database = info.database {
                meta += [(RegistryMeta.systemIdentifier, database.systemIdentifier), (RegistryMeta.databaseName, database.databaseName)]
            }
            if let prefix = info.schemaPrefix { meta.append((RegistryMeta.schemaPrefix, prefix)) }
            for (key, value) in meta {
                try db.execute(sql: "INSERT OR REPLACE INTO registry_meta (key, value) VALUES (?, ?)", arguments: [key, value])
            }
        }
    }
}
