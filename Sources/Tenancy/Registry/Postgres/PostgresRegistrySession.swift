import Foundation
import SchemaDB

/// The PostgreSQL registry's writes, run through `db`: a pool handle (each write is one
/// statement, its own transaction) or a transaction handle (the writes join the caller's
/// transaction, and their announcements are delivered when it commits).
struct PostgresRegistrySession: RegistryWriter {
    let db: SchemaDatabase
    let info: RegistryInfo
    let location: String

    private var channel: String { info.notificationChannel }
    private var reuseDelaySeconds: Double { Double(info.slugReuseDelay.wholeMilliseconds) / 1000 }

    /// `WHERE` condition of a slug `$slug` released by another tenant than `$tenant` less than
    /// `$seconds` ago.
    private static func recentlyReleased(slug: Int, tenant: Int, seconds: Int) -> String {
        "EXISTS (SELECT 1 FROM {{tables.released_slugs}} WHERE slug = $\(slug) AND tenant_id IS DISTINCT FROM $\(tenant)::bigint AND released_at > now() - make_interval(secs => $\(seconds)::float8))"
    }

    func insert(_ record: TenantRecord, event: TenantEvent.Kind, detail: String?) async throws -> TenantRecord {
        try await translating {
            let sql = try SQLTemplate("""
                WITH inserted AS (
                    INSERT INTO {{tables.tenants}} (slug, display_name, schema_name, placement, state, generation, migration_file, migration_checksum, last_error)
                    SELECT $1, $2, $3, $4, $5, 1, $6, $7, $8 WHERE NOT \(Self.recentlyReleased(slug: 1, tenant: 11, seconds: 12))
                        AND \(Self.placementHeld(4, defaultName: 13))
                    RETURNING \(TenantRecord.postgresColumns)
                ), logged AS (
                    INSERT INTO {{tables.tenant_events}} (tenant_id, kind, detail) SELECT id, $9, $10 FROM inserted
                )
                SELECT * FROM inserted
                """)
            let rows = try await db.fetchAll(
                sql, record.slug, record.displayName, record.schema, record.placement, record.state.rawValue, record.migrationFile,
                record.migrationChecksum, record.lastError, event.rawValue, detail, Int64?.none, reuseDelaySeconds, Placement.defaultName)
            guard let row = rows.first else { throw try await whyNotWritten(record, slug: record.slug, placements: [record.placement]) }
            return try TenantRecord(postgresRow: row)
        }
    }

    func update(_ record: TenantRecord, _ change: TenantChange) async throws -> TenantRecord {
        try await translating {
            let next = record.applying(change, at: Date())
            let renamed = next.slug != record.slug
            let sql = try SQLTemplate("""
                WITH moved AS (
                    UPDATE {{tables.tenants}} SET slug = $3, display_name = $4, state = $5, generation = generation + 1,
                        migration_file = $6, migration_checksum = $7, last_error = $8, updated_at = now(),
                        placement = $16, move_target = $17, move_return_state = $18, move_mode = $19
                    WHERE id = $1 AND generation = $2 AND NOT ($11 AND \(Self.recentlyReleased(slug: 3, tenant: 1, seconds: 12)))
                        AND ($16 = $20 OR \(Self.placementHeld(16, defaultName: 22)))
                        AND ($17::text IS NULL OR $17 IS NOT DISTINCT FROM $21::text OR \(Self.placementHeld(17, defaultName: 22)))
                    RETURNING \(TenantRecord.postgresColumns)
                ), released AS (
                    INSERT INTO {{tables.released_slugs}} (slug, tenant_id, released_at) SELECT $13, id, now() FROM moved WHERE $11
                    ON CONFLICT (slug) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, released_at = EXCLUDED.released_at
                ), logged AS (
                    INSERT INTO {{tables.tenant_events}} (tenant_id, kind, detail) SELECT id, $9, $10 FROM moved
                )
                SELECT moved.*, pg_notify($14, $15)::text FROM moved
                """)
            let rows = try await db.fetchAll(
                sql, record.id, record.generation, next.slug, next.displayName, next.state.rawValue, next.migrationFile, next.migrationChecksum,
                next.lastError, change.event.rawValue, change.detail, renamed, reuseDelaySeconds, record.slug, channel,
                ChangeAnnouncement.payload(record, next) ?? "", next.placement, next.move?.target, next.move?.returnState.rawValue, next.move?.mode.rawValue,
                record.placement, record.move?.target, Placement.defaultName)
            let named = [next.placement, next.move?.target].compactMap { $0 }.filter { $0 != record.placement && $0 != record.move?.target }
            guard let row = rows.first else { throw try await whyNotWritten(record, slug: renamed ? next.slug : nil, placements: named) }
            return try TenantRecord(postgresRow: row)
        }
    }

    func claimSpare(id: Int64?, at level: MigrationLevel?, placement: String, slug: TenantSlug, displayName: String?, verifyingSchemaExists: Bool) async throws -> TenantRecord? {
        try await translating {
            let sql = try SQLTemplate("""
                WITH spare AS (
                    SELECT id FROM {{tables.tenants}}
                    WHERE state = 'spare' AND placement = $9 AND migration_file IS NOT DISTINCT FROM $3 AND migration_checksum IS NOT DISTINCT FROM $4
                        AND ($7::bigint IS NULL OR id = $7) AND (NOT $8 OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = schema_name))
                        AND NOT \(Self.recentlyReleased(slug: 1, tenant: 6, seconds: 5))
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
                ), claimed AS (
                    UPDATE {{tables.tenants}} t SET slug = $1, display_name = $2, state = 'active', generation = t.generation + 1, updated_at = now()
                    FROM spare WHERE t.id = spare.id
                    RETURNING \(TenantRecord.postgresColumns.split(separator: ", ").map { "t." + $0 }.joined(separator: ", "))
                ), logged AS (
                    INSERT INTO {{tables.tenant_events}} (tenant_id, kind) SELECT id, 'claimed' FROM claimed
                )
                SELECT claimed.* FROM claimed
                """)
            let rows = try await db.fetchAll(
                sql, slug.rawValue, displayName, level?.lastFile, level?.setChecksum, reuseDelaySeconds, Int64?.none, id, verifyingSchemaExists, placement)
            if let row = rows.first { return try TenantRecord(postgresRow: row) }
            if let reason = try await slugProblem(slug.rawValue, for: nil) { throw reason }
            return nil
        }
    }

    func remove(_ record: TenantRecord) async throws {
        try await translating {
            try await db.execute("DELETE FROM {{tables.tenant_events}} WHERE tenant_id = $1", record.id)
            let deleted = try await db.execute("DELETE FROM {{tables.tenants}} WHERE id = $1 AND generation = $2", record.id, record.generation)
            guard deleted == 1 else { throw try await whyNotWritten(record, slug: nil) }
        }
    }

    /// Reads the row's level under its lock, and writes the new one unless it is behind: in
    /// a transaction (``PostgresRegistryStore`` opens one).
    @discardableResult
    func recordLevel(id: Int64, level: MigrationLevel, event: TenantEvent.Kind?, detail: String?) async throws -> Bool {
        try await translating {
            if let recorded = try await db.fetchValue("SELECT migration_file FROM {{tables.tenants}} WHERE id = $1 FOR UPDATE", id, as: String.self),
               level.precedes(file: recorded) {
                return false
            }
            try await db.execute("""
                WITH leveled AS (
                    UPDATE {{tables.tenants}} SET migration_file = $2, migration_checksum = $3, updated_at = now() WHERE id = $1 RETURNING id
                )
                INSERT INTO {{tables.tenant_events}} (tenant_id, kind, detail) SELECT id, $4, $5 FROM leveled WHERE $4::text IS NOT NULL
                """, id, level.lastFile, level.setChecksum, event?.rawValue, detail)
            return true
        }
    }

    // MARK: - Why a write did not happen

    /// The error for a conditional write that wrote nothing: the slug is held or cooling
    /// down, a placement it names was removed, or the row moved on.
    private func whyNotWritten(_ record: TenantRecord, slug: String?, placements: [String] = []) async throws -> TenancyError {
        if let slug, let problem = try await slugProblem(slug, for: record.id == 0 ? nil : record.id) { return problem }
        for placement in placements where try await db.fetchValue("SELECT count(*)::bigint FROM {{tables.placements}} WHERE name = $1", placement, as: Int64.self) != 1 {
            return TenancyError.placementNotFound(placement)
        }
        let now = try await db.fetchAll(try TenantRecord.selectingPostgres("WHERE id = $1"), record.id).first.map(TenantRecord.init(postgresRow:))
        return TenancyError.concurrentChange(record, now: now)
    }

    /// The condition that placement `$parameter` exists, holding its row against removal
    /// (`FOR KEY SHARE`) until the writing transaction ends: a removal locks the row first, so
    /// it waits for the write and then sees the row it added. The default placement, which is
    /// never removed (`$defaultName`), is not locked, so that its row is no hot spot.
    static func placementHeld(_ parameter: Int, defaultName: Int) -> String {
        "($\(parameter) = $\(defaultName) OR EXISTS (SELECT FROM {{tables.placements}} WHERE name = $\(parameter) FOR KEY SHARE))"
    }

    private func slugProblem(_ slug: String, for tenantID: Int64?) async throws -> TenancyError? {
        if let holder = try await db.fetchAll(try TenantRecord.selectingPostgres("WHERE slug = $1"), slug).first {
            let holder = try TenantRecord(postgresRow: holder)
            if holder.id != tenantID { return TenancyError.slugTaken(slug, by: holder) }
        }
        let age = try await db.fetchValue(
            "SELECT extract(epoch FROM now() - released_at)::float8 FROM {{tables.released_slugs}} WHERE slug = $1 AND tenant_id IS DISTINCT FROM $2::bigint",
            slug, tenantID, as: Double.self)
        if let age, age < reuseDelaySeconds {
            return TenancyError.slugRecentlyReleased(slug, availableIn: .milliseconds(Int64((reuseDelaySeconds - age) * 1000)))
        }
        return nil
    }

    @discardableResult
    private func translating<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SchemaDBError {
            throw Self.translate(error, action: "be written", location: location)
        }
    }

    /// A database error of a registry write as a ``TenancyError`` naming the registry, and
    /// never the values the statement carried.
    static func translate(_ error: SchemaDBError, action: String, location: String) -> TenancyError {
        switch error.sqlState {
        case "23505":
            let what = error.serverMessage?.contains("slug") == true ? "a tenant with this slug" : "a row for this schema"
            return TenancyError(code: .slugTaken, message: "the tenant registry already has \(what); read it again", underlying: error)
        case "40001", "40P01", "55P03":
            return TenancyError(code: .registryBusy, message: "the tenant registry \(location) was busy (\(error.sqlState ?? "")); try again", underlying: error)
        default:
            return TenancyError(code: .registryFailed, message: "the tenant registry \(location) could not \(action): \(error)", underlying: error)
        }
    }
}
