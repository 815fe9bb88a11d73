import Foundation
import PostgresNIO
import SchemaDB

/// The fleet-run ledger and copying, in the PostgreSQL registry.
extension PostgresRegistryStore {
    private var db: SchemaDatabase { pool.database(schema: schema) }

    func beginFleetRun(tenantIDs: [Int64], target: MigrationLevel?, parameters: String) async throws -> Int64 {
        try await translating("be written") {
            try await db.withTransaction { tx in
                try await Self.interruptAbandonedRuns(tx)
                let runID = try await tx.insertReturningID(
                    "INSERT INTO {{tables.fleet_runs}} (started_at, status, target_file, target_checksum, parameters) VALUES (now(), 'running', $1, $2, $3)",
                    target?.lastFile, target?.setChecksum, parameters, as: Int64.self)
                try await tx.execute(
                    """
                    INSERT INTO {{tables.fleet_run_items}} (run_id, tenant_id, position, status)
                    SELECT $1, tenant_id, position - 1, 'pending' FROM unnest($2::bigint[]) WITH ORDINALITY AS t (tenant_id, position)
                    """, runID, tenantIDs)
                return runID
            }
        }
    }

    func reopenFleetRun(id: Int64, target: MigrationLevel?) async throws -> [Int64] {
        try await translating("be written") {
            try await db.withTransaction { tx in
                try await Self.interruptAbandonedRuns(tx)
                try await tx.execute("UPDATE {{tables.fleet_run_items}} SET status = 'pending' WHERE run_id = $1 AND status IN ('failed', 'running')", id)
                try await tx.execute(
                    "UPDATE {{tables.fleet_runs}} SET status = 'running', finished_at = NULL, error = NULL, target_file = $2, target_checksum = $3 WHERE id = $1",
                    id, target?.lastFile, target?.setChecksum)
                return try await tx.fetchAll("SELECT tenant_id FROM {{tables.fleet_run_items}} WHERE run_id = $1 AND status = 'pending' ORDER BY position", id, as: Int64.self)
            }
        }
    }

    func startFleetItem(runID: Int64, tenantID: Int64) async throws -> (position: Int, attempts: Int, tenant: TenantRecord?) {
        try await translating("be written") {
            let item = try await db.fetchAll(
                """
                UPDATE {{tables.fleet_run_items}} SET status = 'running', attempts = attempts + 1, started_at = now(), finished_at = NULL, error = NULL
                WHERE run_id = $1 AND tenant_id = $2 RETURNING position, attempts
                """, runID, tenantID
            ).first.map { try $0.decode((Int32, Int32).self) }
            let tenant = try await record(id: tenantID)
            return (Int(item?.0 ?? 0), Int(item?.1 ?? 0), tenant)
        }
    }

    func finishFleetItem(runID: Int64, tenantID: Int64, status: FleetRunItem.Status, error: String?, durationMilliseconds: Int, filesApplied: [String], level: MigrationLevel?) async throws {
        try await translating("be written") {
            try await db.withTransaction { tx in
                // A level never goes back (see RegistryStore.recordLevel): read under the row's lock.
                let recorded = try await tx.fetchValue("SELECT migration_file FROM {{tables.tenants}} WHERE id = $1 FOR UPDATE", tenantID, as: String.self)
                let level = level.flatMap { level in recorded.map(level.precedes(file:)) == true ? nil : level }
                try await tx.execute(
                    """
                    WITH item AS (
                        UPDATE {{tables.fleet_run_items}} SET status = $3, error = $4, duration_ms = $5, files_applied = $6, finished_at = now()
                        WHERE run_id = $1 AND tenant_id = $2 RETURNING tenant_id
                    ), leveled AS (
                        UPDATE {{tables.tenants}} SET migration_file = $7, migration_checksum = $8, updated_at = now()
                        WHERE id = $2 AND $7::text IS NOT NULL RETURNING id
                    )
                    INSERT INTO {{tables.tenant_events}} (tenant_id, kind, detail)
                    SELECT $2, 'migrated', $9 FROM item WHERE cardinality($6::text[]) > 0
                    """,
                    runID, tenantID, status.rawValue, error, Int64(durationMilliseconds), filesApplied, level?.lastFile, level?.setChecksum,
                    "run \(runID): \(filesApplied.joined(separator: ", "))")
            }
        }
    }

    func finishFleetRun(id: Int64, status: FleetRun.Status, error: String?) async throws {
        try await translating("be written") {
            try await db.execute("UPDATE {{tables.fleet_runs}} SET status = $2, error = $3, finished_at = now() WHERE id = $1 AND status = 'running'", id, status.rawValue, error)
        }
    }

    func fleetRuns(limit: Int) async throws -> [FleetRun] {
        try await translating("be read") {
            try await runs(try Self.selectingRuns("ORDER BY r.id DESC LIMIT $1"), Int64(limit))
        }
    }

    func fleetRun(id: Int64) async throws -> FleetRun? {
        try await translating("be read") {
            try await runs(try Self.selectingRuns("WHERE r.id = $1"), id).first
        }
    }

    func fleetRunItems(runID: Int64, statuses: Set<FleetRunItem.Status>?) async throws -> [FleetRunItem] {
        try await translating("be read") {
            try await db.fetchAll(
                try Self.selectingItems("WHERE i.run_id = $1 AND ($2::text[] IS NULL OR i.status = ANY($2)) ORDER BY i.position"),
                runID, statuses.map { $0.map(\.rawValue).sorted() }
            ).map { try Self.item(from: $0).item }
        }
    }

    private static func interruptAbandonedRuns(_ tx: SchemaDatabase) async throws {
        try await tx.execute("UPDATE {{tables.fleet_runs}} SET status = 'interrupted', finished_at = now(), error = 'its process stopped before the run finished' WHERE status = 'running'")
    }

    private static func selectingRuns(_ tail: String) throws -> SQLTemplate {
        try SQLTemplate("""
            SELECT r.id, r.status, r.started_at, r.finished_at, r.target_file, r.target_checksum, r.parameters, r.error,
                (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)::text FROM (
                    SELECT status, count(*) AS n FROM {{tables.fleet_run_items}} WHERE run_id = r.id GROUP BY status) c)
            FROM {{tables.fleet_runs}} r
            """ + " " + tail)
    }

    private func runs(_ sql: SQLTemplate, _ argument: Int64) async throws -> [FleetRun] {
        try await db.fetchAll(sql, argument).map { row in
            let (id, status, startedAt, finishedAt, file, checksum, parameters, error, countsJSON) = try row.decode(
                (Int64, String, Date, Date?, String?, String?, String?, String?, String).self)
            var counts = FleetRun.Counts()
            let perStatus = try JSONDecoder().decode([String: Int].self, from: Data(countsJSON.utf8))
            for (name, count) in perStatus {
                if let status = FleetRunItem.Status(rawValue: name) { counts.add(status, count) }
            }
            return FleetRun(
                id: id, status: FleetRun.Status(rawValue: status) ?? .interrupted, startedAt: startedAt, finishedAt: finishedAt,
                target: file.flatMap { file in checksum.map { MigrationLevel(lastFile: file, setChecksum: $0) } }, parameters: parameters,
                error: error, counts: counts)
        }
    }

    private static func selectingItems(_ tail: String) throws -> SQLTemplate {
        try SQLTemplate("""
            SELECT i.run_id, i.tenant_id, t.slug, t.schema_name, i.position, i.status, i.attempts, i.error, i.duration_ms,
                i.files_applied, i.started_at, i.finished_at
            FROM {{tables.fleet_run_items}} i JOIN {{tables.tenants}} t ON t.id = i.tenant_id
            """ + " " + tail)
    }

    private static func item(from row: PostgresRow) throws -> RegistrySnapshot.Item {
        let (runID, tenantID, slug, schema, position, status, attempts, error, duration, files, startedAt, finishedAt) = try row.decode(
            (Int64, Int64, String?, String, Int32, String, Int32, String?, Int64?, [String], Date?, Date?).self)
        return RegistrySnapshot.Item(runID: runID, item: FleetRunItem(
            tenantID: tenantID, slug: slug, schema: schema, position: Int(position), status: FleetRunItem.Status(rawValue: status) ?? .pending,
            attempts: Int(attempts), error: error, durationMilliseconds: duration.map(Int.init), filesApplied: files,
            startedAt: startedAt, finishedAt: finishedAt))
    }

    // MARK: - Copying

    func snapshot() async throws -> RegistrySnapshot {
        let info = try await prepare(creating: false)
        return try await translating("be read") {
            try await db.withTransaction(isolation: .repeatableRead, readOnly: true) { tx in
                let tenants = try await tx.fetchAll(try TenantRecord.selectingPostgres("ORDER BY id")).map(TenantRecord.init(postgresRow:))
                let events = try await tx.fetchAll("SELECT id, tenant_id, at, kind, detail FROM {{tables.tenant_events}} ORDER BY id").map { row in
                    let (id, tenantID, at, kind, detail) = try row.decode((Int64, Int64, Date, String, String?).self)
                    return RegistrySnapshot.Event(id: id, tenantID: tenantID, at: at, kind: try TenantEvent.Kind(registryValue: kind), detail: detail)
                }
                let released = try await tx.fetchAll("SELECT slug, tenant_id, released_at FROM {{tables.released_slugs}}").map { row in
                    let (slug, tenantID, at) = try row.decode((String, Int64, Date).self)
                    return RegistrySnapshot.ReleasedSlug(slug: slug, tenantID: tenantID, releasedAt: at)
                }
                let runs = try await tx.fetchAll(try Self.selectingRuns("ORDER BY r.id")).map { row in
                    let (id, status, startedAt, finishedAt, file, checksum, parameters, error, _) = try row.decode(
                        (Int64, String, Date, Date?, String?, String?, String?, String?, String).self)
                    return FleetRun(
                        id: id, status: FleetRun.Status(rawValue: status) ?? .interrupted, startedAt: startedAt, finishedAt: finishedAt,
                        target: file.flatMap { file in checksum.map { MigrationLevel(lastFile: file, setChecksum: $0) } }, parameters: parameters,
                        error: error, counts: .init())
                }
                let items = try await tx.fetchAll(try Self.selectingItems("ORDER BY i.run_id, i.position")).map(Self.item(from:))
                return RegistrySnapshot(info: info, placements: try await Self.placements(tx), tenants: tenants, events: events, releasedSlugs: released, runs: runs, items: items)
            }
        }
    }

    func restore(_ snapshot: RegistrySnapshot) async throws {
        _ = try await prepare(creating: false)
        let channel = snapshot.info.notificationChannel
        try await translating("be written") {
            try await db.withTransaction { tx in
                let used = try await tx.fetchValue(
                    "SELECT (SELECT count(*) FROM {{tables.tenants}}) + (SELECT count(*) FROM {{tables.fleet_runs}})", as: Int64.self) ?? 0
                guard used == 0 else {
                    throw TenancyError(code: .invalidArgument, message: "the registry \(location) is not empty; copy into a new registry")
                }
                for placement in snapshot.placements { try await Self.insert(placement, tx) }
                try await tx.copyRows(
                    into: "tenants",
                    columns: ["id", "slug", "display_name", "schema_name", "placement", "state", "generation", "migration_file", "migration_checksum", "created_at", "updated_at", "last_error",
                              "move_target", "move_return_state", "move_mode"],
                    rows: snapshot.tenants.lazy.map { tenant -> [(any CopyValue)?] in
                        [tenant.id, tenant.slug, tenant.displayName, tenant.schema, tenant.placement, tenant.state.rawValue, tenant.generation,
                         tenant.migrationFile, tenant.migrationChecksum, tenant.createdAt, tenant.updatedAt, tenant.lastError,
                         tenant.move?.target, tenant.move?.returnState.rawValue, tenant.move?.mode.rawValue]
                    })
                try await tx.copyRows(
                    into: "tenant_events", columns: ["id", "tenant_id", "at", "kind", "detail"],
                    rows: snapshot.events.lazy.map { [$0.id, $0.tenantID, $0.at, $0.kind.rawValue, $0.detail] })
                try await tx.copyRows(
                    into: "released_slugs", columns: ["slug", "tenant_id", "released_at"],
                    rows: snapshot.releasedSlugs.lazy.map { [$0.slug, $0.tenantID, $0.releasedAt] })
                try await tx.copyRows(
                    into: "fleet_runs", columns: ["id", "started_at", "finished_at", "status", "target_file", "target_checksum", "parameters", "error"],
                    rows: snapshot.runs.lazy.map { [$0.id, $0.startedAt, $0.finishedAt, $0.status.rawValue, $0.target?.lastFile, $0.target?.setChecksum, $0.parameters, $0.error] })
                try await tx.copyRows(
                    into: "fleet_run_items",
                    columns: ["run_id", "tenant_id", "position", "status", "attempts", "error", "duration_ms", "files_applied", "started_at", "finished_at"],
                    rows: snapshot.items.lazy.map { entry -> [(any CopyValue)?] in
                        let item = entry.item
                        return [entry.runID, item.tenantID, item.position, item.status.rawValue, item.attempts, item.error, item.durationMilliseconds,
                                Self.arrayLiteral(item.filesApplied), item.startedAt, item.finishedAt]
                    })
                for table in ["tenants", "tenant_events", "fleet_runs"] {
                    try await tx.execute(try SQLTemplate(
                        "SELECT setval(pg_get_serial_sequence($1, 'id'), coalesce((SELECT max(id) FROM {{tables.\(table)}}), 0) + 1, false)"),
                        "\(schema.quoted).\(SQLIdentifier.quote(table))")
                }
                var meta = [(RegistryMeta.id, snapshot.info.id), (RegistryMeta.slugReuseDelay, String(snapshot.info.slugReuseDelay.wholeMilliseconds))]
                if let database = snapshot.info.database {
                    meta += [(RegistryMeta.systemIdentifier, database.systemIdentifier), (RegistryMeta.databaseName, database.databaseName)]
                }
                if let prefix = snapshot.info.schemaPrefix { meta.append((RegistryMeta.schemaPrefix, prefix)) }
                for (key, value) in meta {
                    try await tx.execute("INSERT INTO {{tables.registry_meta}} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, value)
                }
                _ = try await tx.fetchAll("SELECT pg_notify($1, $2)", channel, ChangeAnnouncement.everything)
            }
            _ = try await prepare(creating: false)
        }
    }

    /// `values` as a PostgreSQL array literal, for COPY's text format.
    private static func arrayLiteral(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
    }
}
