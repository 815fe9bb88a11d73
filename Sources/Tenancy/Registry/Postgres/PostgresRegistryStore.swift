import Foundation
import Logging
import PostgresNIO
import SchemaDB
import Synchronization

/// The registry in a schema of its own (default `tenancy`) of a PostgreSQL database, for
/// fleets of replicas and operators on other hosts.
///
/// Every change is ONE statement (the row, its event and its `pg_notify`), or runs inside the
/// caller's transaction through ``session(in:)``, so that a provisioning commits its registry
/// row together with `CREATE SCHEMA` and the migration set.
final class PostgresRegistryStore: RegistryStore {
    let pool: DatabasePool
    let schema: SQLIdentifier
    let location: String
    private let prepared = Mutex<RegistryInfo?>(nil)

    /// - Parameters:
    ///   - pool: The pool of the registry's database.
    ///   - schema: The registry's schema.
    ///   - databaseDescription: How messages name the database, such as a masked URL.
    init(pool: DatabasePool, schema: SQLIdentifier, databaseDescription: String) {
        self.pool = pool
        self.schema = schema
        self.location = "schema \(schema.quoted) of \(databaseDescription)"
    }

    /// Whether the registry shares `pool`, so that its writes can join a tenant's DDL in one transaction.
    func isColocated(with pool: DatabasePool) -> Bool { self.pool === pool }

    /// The registry's writes inside `transaction`, a handle from `withTransaction` on this
    /// store's pool.
    func session(in transaction: SchemaDatabase) throws -> PostgresRegistrySession {
        PostgresRegistrySession(db: transaction.withSchema(schema), info: try requirePrepared(), location: location)
    }

    private var handle: SchemaDatabase { pool.database(schema: schema) }

    var preparedInfo: RegistryInfo? { prepared.withLock { $0 } }

    private func requirePrepared() throws -> RegistryInfo {
        guard let info = preparedInfo else {
            throw TenancyError(code: .registryFailed, message: "the tenant registry \(location) was used before it was opened")
        }
        return info
    }

    /// The writes of this store, each in a transaction of its own (one statement each, mostly).
    private func autocommit() throws -> PostgresRegistrySession {
        PostgresRegistrySession(db: handle, info: try requirePrepared(), location: location)
    }

    // MARK: - The registry's record

    func prepare(creating: Bool) async throws -> RegistryInfo {
        try await translating("be opened") {
            let db = handle
            let exists = try await db.tableExists("tenants")
            guard exists || creating else {
                throw TenancyError(
                    code: .registryNotFound,
                    message: "there is no tenant registry in \(location); create one with `tenantctl init`, or point --registry (TENANCY_REGISTRY) at the existing one")
            }
            var options = SchemaMigrator.Options()
            options.createsSchema = true
            let migrator = try SchemaMigrator(database: db, migrations: Self.migrations, module: Self.module, options: options)
            let status = try await migrator.status()
            guard status.missing.isEmpty else {
                throw TenancyError(
                    code: .registryTooNew,
                    message: "the tenant registry \(location) was written by a newer version of Tenancy (it has \(status.missing.joined(separator: ", "))); upgrade this program before using it")
            }
            if !status.pending.isEmpty { try await migrator.apply() }
            try await db.execute(
                "INSERT INTO {{tables.registry_meta}} (key, value) VALUES ($1, $2), ($3, $4) ON CONFLICT (key) DO NOTHING",
                RegistryMeta.id, RegistryMeta.makeID(), RegistryMeta.slugReuseDelay, String(RegistryMeta.defaultSlugReuseDelay.wholeMilliseconds))
            let info = try await Self.readInfo(db)
            prepared.withLock { $0 = info }
            return info
        }
    }

    func bind(database: DatabaseIdentity, schemaPrefix: String, migrationModule: String) async throws -> RegistryInfo {
        try await translating("be written") {
            try await handle.withTransaction { tx in
                _ = try await tx.fetchAll("SELECT pg_advisory_xact_lock($1)", AdvisoryLockKey.make("tenancy.registry.bind", schema.name))
                let info = try await Self.readInfo(tx)
                let rows = try RegistryMeta.binding(info, database: database, schemaPrefix: schemaPrefix, migrationModule: migrationModule, location: location)
                for (key, value) in rows {
                    try await tx.execute("INSERT INTO {{tables.registry_meta}} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, value)
                }
                let bound = rows.isEmpty ? info : try await Self.readInfo(tx)
                prepared.withLock { $0 = bound }
                return bound
            }
        }
    }

    private static func readInfo(_ db: SchemaDatabase) async throws -> RegistryInfo {
        let rows = try await db.fetchAll("SELECT key, value FROM {{tables.registry_meta}}")
        var values: [String: String] = [:]
        for row in rows {
            let (key, value) = try row.decode((String, String).self)
            values[key] = value
        }
        return try RegistryMeta.info(values, formatVersion: migrations.files.count)
    }

    // MARK: - Reading

    func record(slug: String) async throws -> TenantRecord? {
        try await translating("be read") {
            try await handle.fetchAll(try TenantRecord.selectingPostgres("WHERE slug = $1"), slug).first.map(TenantRecord.init(postgresRow:))
        }
    }

    func record(id: Int64) async throws -> TenantRecord? {
        try await translating("be read") {
            try await handle.fetchAll(try TenantRecord.selectingPostgres("WHERE id = $1"), id).first.map(TenantRecord.init(postgresRow:))
        }
    }

    func settledRecord(after record: TenantRecord) async throws -> (row: TenantRecord?, fenced: Bool) {
        try await translating("be read") {
            // Waits on the row lock of a write in progress; after it, a write not yet started
            // finds another generation and writes nothing. A fresh statement then reads.
            let fenced = try await handle.execute(
                "UPDATE {{tables.tenants}} SET generation = generation + 1 WHERE id = $1 AND generation = $2", record.id, record.generation) == 1
            let row = try await handle.fetchAll(try TenantRecord.selectingPostgres("WHERE id = $1"), record.id).first.map(TenantRecord.init(postgresRow:))
            return (row, fenced)
        }
    }

    func tenants(in state: TenantState?, limit: Int?, offset: Int) async throws -> [Tenant] {
        try await translating("be read") {
            let rows = try await handle.fetchAll(
                try TenantRecord.selectingPostgres("WHERE slug IS NOT NULL AND ($1::text IS NULL OR state = $1) ORDER BY slug LIMIT $2 OFFSET $3"),
                state?.rawValue, limit, offset)
            return try rows.compactMap { try TenantRecord(postgresRow: $0).tenant }
        }
    }

    func records(in states: Set<TenantState>?) async throws -> [TenantRecord] {
        try await translating("be read") {
            try await handle.fetchAll(
                try TenantRecord.selectingPostgres("WHERE $1::text[] IS NULL OR state = ANY($1) ORDER BY slug IS NULL, slug, id"),
                states.map { $0.map(\.rawValue).sorted() }
            ).map(TenantRecord.init(postgresRow:))
        }
    }

    func countByState() async throws -> [TenantState: Int] {
        try await translating("be read") {
            var counts: [TenantState: Int] = [:]
            for row in try await handle.fetchAll("SELECT state, count(*)::bigint FROM {{tables.tenants}} GROUP BY state") {
                let (name, count) = try row.decode((String, Int64).self)
                if let state = TenantState(rawValue: name) { counts[state] = Int(count) }
            }
            return counts
        }
    }

    func spares(limit: Int?, placement: String?) async throws -> [TenantRecord] {
        try await translating("be read") {
            try await handle.fetchAll(
                try TenantRecord.selectingPostgres("WHERE state = 'spare' AND ($2::text IS NULL OR placement = $2) ORDER BY id LIMIT $1"), limit, placement
            ).map(TenantRecord.init(postgresRow:))
        }
    }

    func spares(at level: MigrationLevel?, placement: String, after id: Int64, limit: Int) async throws -> [TenantRecord] {
        try await translating("be read") {
            try await handle.fetchAll(
                try TenantRecord.selectingPostgres(
                    "WHERE state = 'spare' AND placement = $5 AND id > $1 AND migration_file IS NOT DISTINCT FROM $2 AND migration_checksum IS NOT DISTINCT FROM $3 ORDER BY id LIMIT $4"),
                id, level?.lastFile, level?.setChecksum, limit, placement
            ).map(TenantRecord.init(postgresRow:))
        }
    }

    func events(tenantID: Int64, limit: Int) async throws -> [TenantEvent] {
        try await translating("be read") {
            try await handle.fetchAll("SELECT kind, at, detail FROM {{tables.tenant_events}} WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2", tenantID, limit)
                .map { row in
                    let (kind, at, detail) = try row.decode((String, Date, String?).self)
                    return TenantEvent(kind: try TenantEvent.Kind(registryValue: kind), at: at, detail: detail)
                }
        }
    }

    // MARK: - Writing

    func insert(_ record: TenantRecord, event: TenantEvent.Kind, detail: String?) async throws -> TenantRecord {
        try await translating("be written") { try await autocommit().insert(record, event: event, detail: detail) }
    }

    func update(_ record: TenantRecord, _ change: TenantChange) async throws -> TenantRecord {
        try await translating("be written") { try await autocommit().update(record, change) }
    }

    func claimSpare(id: Int64?, at level: MigrationLevel?, placement: String, slug: TenantSlug, displayName: String?, verifyingSchemaExists: Bool) async throws -> TenantRecord? {
        try await translating("be written") {
            try await autocommit().claimSpare(id: id, at: level, placement: placement, slug: slug, displayName: displayName, verifyingSchemaExists: verifyingSchemaExists)
        }
    }

    func remove(_ record: TenantRecord) async throws {
        try await translating("be written") {
            try await handle.withTransaction { tx in try await session(in: tx).remove(record) }
        }
    }

    @discardableResult
    func recordLevel(id: Int64, level: MigrationLevel, event: TenantEvent.Kind?, detail: String?) async throws -> Bool {
        try await translating("be written") {
            try await handle.withTransaction { tx in try await session(in: tx).recordLevel(id: id, level: level, event: event, detail: detail) }
        }
    }

    /// Runs `body`, turning database errors into registry errors that name the registry.
    @discardableResult
    func translating<T>(_ action: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as TenancyError {
            throw error
        } catch let error as SchemaDBError {
            throw PostgresRegistrySession.translate(error, action: action, location: location)
        }
    }
}

extension TenantRecord {
    /// The columns ``init(postgresRow:)`` reads, in order.
    static let postgresColumns = "id, slug, display_name, schema_name, placement, state, generation, migration_file, migration_checksum, created_at, updated_at, last_error, move_target, move_return_state, move_mode"

    /// `SELECT` of ``postgresColumns`` from the registry's tenants, followed by `tail`.
    static func selectingPostgres(_ tail: String) throws -> SQLTemplate {
        try SQLTemplate("SELECT \(postgresColumns) FROM {{tables.tenants}} " + tail)
    }

    init(postgresRow row: PostgresRow) throws {
        let (id, slug, displayName, schema, placement, state, generation, file, checksum, createdAt, updatedAt, lastError, moveTarget, moveReturnState, moveMode) = try row.decode(
            (Int64, String?, String?, String, String, String, Int64, String?, String?, Date, Date, String?, String?, String?, String?).self)
        guard let state = TenantState(rawValue: state) else {
            throw TenancyError(code: .registryTooNew, message: "the registry has a tenant in state \"\(state.debugDescriptionEscaped)\", which this version does not know; upgrade Tenancy")
        }
        self.init(
            id: id, slug: slug, displayName: displayName, schema: schema, placement: placement, state: state, generation: generation,
            migrationFile: file, migrationChecksum: checksum, createdAt: createdAt, updatedAt: updatedAt, lastError: lastError,
            move: TenantMove(target: moveTarget, returnState: moveReturnState, mode: moveMode))
    }
}

extension TenantEvent.Kind {
    /// A kind read back from a registry.
    init(registryValue: String) throws {
        guard let kind = Self(rawValue: registryValue) else {
            throw TenancyError(code: .registryTooNew, message: "the registry has an event of kind \"\(registryValue.debugDescriptionEscaped)\", which this version does not know; upgrade Tenancy")
        }
        self = kind
    }
}
