import Foundation
import GRDB

/// The tenant registry: every tenant, its schema, lifecycle state and migration level, an
/// event log, and the fleet-run ledger, in a local SQLite file (WAL mode).
///
/// Reads are concurrent; writes are serialised by SQLite. Several processes may open the same
/// file. Every state change is checked against the lifecycle and written to the event log in
/// the same transaction.
public final class TenantRegistry: Sendable {
    /// The default location: `.tenancy/registry.sqlite`.
    public static let defaultPath = ".tenancy/registry.sqlite"

    /// The file, or `nil` for an in-memory registry.
    public let path: String?
    let writer: any DatabaseWriter

    /// Opens (creating when needed) the registry at `path` and brings its tables up to date.
    ///
    /// Two processes opening a fresh registry at once both succeed: migration runs under an
    /// exclusive lock on `<path>.lock`.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryFailed``.
    public init(path: String = TenantRegistry.defaultPath) throws {
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw TenancyError(code: .registryFailed, message: "cannot create the registry directory \(url.deletingLastPathComponent().path): \(error.localizedDescription)")
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        do {
            self.writer = try FileLock.withExclusiveLock(path: path + ".lock") {
                let pool = try DatabasePool(path: path, configuration: configuration)
                try Self.migrator.migrate(pool)
                return pool
            }
        } catch let error as TenancyError {
            throw error
        } catch {
            throw TenancyError(code: .registryFailed, message: "cannot open the tenant registry \(path): \(error); check the path and its permissions", underlying: error)
        }
        self.path = path
    }

    /// A registry in memory, for tests and previews.
    public static func inMemory() throws -> TenantRegistry {
        try TenantRegistry(writer: DatabaseQueue())
    }

    private init(writer: any DatabaseWriter) throws {
        self.writer = writer
        self.path = nil
        try Self.migrator.migrate(writer)
    }

    // MARK: - Reading

    /// The tenant with this slug, or `nil`.
    public func tenant(slug: TenantSlug) async throws -> Tenant? {
        try await read { db in try Self.fetchTenant(db, slug: slug.rawValue) }
    }

    /// Tenants in slug order, optionally only those in `state`.
    public func tenants(in state: TenantState? = nil, limit: Int? = nil, offset: Int = 0) async throws -> [Tenant] {
        try await read { db in
            var sql = "SELECT \(Self.columns) FROM tenants WHERE slug IS NOT NULL"
            var arguments: StatementArguments = []
            if let state {
                sql += " AND state = ?"
                arguments += [state.rawValue]
            }
            sql += " ORDER BY slug LIMIT ? OFFSET ?"
            arguments += [limit ?? -1, offset]
            return try Array(Row.fetchCursor(db, sql: sql, arguments: arguments).map(Self.tenant(from:)))
        }
    }

    /// The number of tenants in each state (spares count as ``TenantState/spare``).
    public func countByState() async throws -> [TenantState: Int] {
        try await read { db in
            var counts: [TenantState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, count(*) FROM tenants GROUP BY state") {
                if let state = TenantState(rawValue: row[0]) { counts[state] = row[1] }
            }
            return counts
        }
    }

    /// Unclaimed spare schemas, oldest first.
    public func spares() async throws -> [SpareSchema] {
        try await read { db in try Row.fetchAll(db, sql: Self.spareQuery).map(Self.spare(from:)) }
    }

    /// The spare that onboarding claims next, or `nil` when there is none.
    func oldestSpare() async throws -> SpareSchema? {
        try await read { db in try Row.fetchOne(db, sql: Self.spareQuery + " LIMIT 1").map(Self.spare(from:)) }
    }

    private static let spareQuery = "SELECT id, schema_name, migration_file, migration_checksum, created_at FROM tenants WHERE state = 'spare' ORDER BY id"

    private static func spare(from row: Row) -> SpareSchema {
        SpareSchema(id: row[0], schema: row[1], migrationLevel: level(file: row[2], checksum: row[3]), createdAt: Date(timeIntervalSince1970: row[4]))
    }

    /// The tenant's events, newest first.
    public func events(for slug: TenantSlug, limit: Int = 50) async throws -> [TenantEvent] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT e.kind, e.at, e.detail FROM tenant_events e JOIN tenants t ON t.id = e.tenant_id
                WHERE t.slug = ? ORDER BY e.id DESC LIMIT ?
                """, arguments: [slug.rawValue, limit]
            ).map { TenantEvent(kind: $0[0], at: Date(timeIntervalSince1970: $0[1]), detail: $0[2]) }
        }
    }

    /// Every row of the registry, tenants and spares, with its schema and state.
    func schemaStates() async throws -> [TenantRow] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(TenantRow.columns) FROM tenants").map(TenantRow.init(row:))
        }
    }

    // MARK: - Writing

    /// Inserts a tenant in `provisioning`, or moves a `failed` one back to it for a retry.
    /// - Returns: The row, and whether it was already `provisioning` (a crashed attempt).
    func beginProvisioning(slug: TenantSlug, displayName: String?, makeSchema: () -> String) async throws -> (tenant: Tenant, wasStuck: Bool) {
        let schema = makeSchema()
        return try await write { db in
            if let existing = try Self.fetchTenant(db, slug: slug.rawValue) {
                switch existing.state {
                case .failed:
                    _ = try Self.move(db, id: existing.id, from: try Self.fetchRow(db, id: existing.id)!, to: .provisioning, event: "provisioning", detail: "retry", level: nil, lastError: nil)
                    return (try Self.fetchTenant(db, id: existing.id)!, false)
                case .provisioning:
                    return (existing, true)
                default:
                    return (existing, false)
                }
            }
            let now = Date().timeIntervalSince1970
            try db.execute(
                sql: "INSERT INTO tenants (slug, display_name, schema_name, placement, state, created_at, updated_at) VALUES (?, ?, ?, 'default', 'provisioning', ?, ?)",
                arguments: [slug.rawValue, displayName, schema, now, now])
            let id = db.lastInsertedRowID
            try Self.log(db, tenantID: id, kind: "provisioning", detail: nil)
            return (try Self.fetchTenant(db, id: id)!, false)
        }
    }

    /// Inserts a spare in `provisioning` with a fresh schema name.
    func beginSpare(schema: String) async throws -> Int64 {
        try await write { db in
            let now = Date().timeIntervalSince1970
            try db.execute(
                sql: "INSERT INTO tenants (slug, schema_name, placement, state, created_at, updated_at) VALUES (NULL, ?, 'default', 'provisioning', ?, ?)",
                arguments: [schema, now, now])
            return db.lastInsertedRowID
        }
    }

    /// Moves the row `id` to `state`, refusing transitions the lifecycle does not allow, and logs it.
    @discardableResult
    func transition(id: Int64, to state: TenantState, event: String, detail: String? = nil, level: MigrationLevel? = nil, lastError: String? = nil) async throws -> TenantRow {
        try await write { db in
            guard let current = try Self.fetchRow(db, id: id) else {
                throw TenancyError(code: .tenantNotFound, message: "the registry has no row \(id)")
            }
            return try Self.move(db, id: id, from: current, to: state, event: event, detail: detail, level: level, lastError: lastError)
        }
    }

    /// Records the migration level of a row without changing its state.
    func setLevel(id: Int64, level: MigrationLevel, event: String?) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE tenants SET migration_file = ?, migration_checksum = ?, updated_at = ? WHERE id = ?",
                           arguments: [level.lastFile, level.setChecksum, Date().timeIntervalSince1970, id])
            if let event { try Self.log(db, tenantID: id, kind: event, detail: level.lastFile) }
        }
    }

    /// Hands the spare `id` to `slug` in one transaction. Returns `nil` when the row is no
    /// longer a spare (another process claimed it first).
    func claimSpare(id: Int64, slug: TenantSlug, displayName: String?) async throws -> Tenant? {
        try await write { db in
            if let existing = try Self.fetchTenant(db, slug: slug.rawValue) {
                throw TenancyError(code: .slugTaken, message: "tenant \"\(slug)\" already exists (\(existing.state.rawValue))", slug: slug.rawValue)
            }
            try db.execute(sql: "UPDATE tenants SET slug = ?, display_name = ?, state = 'active', updated_at = ? WHERE id = ? AND state = 'spare'",
                           arguments: [slug.rawValue, displayName, Date().timeIntervalSince1970, id])
            guard db.changesCount == 1 else { return nil }
            try Self.log(db, tenantID: id, kind: "claimed", detail: nil)
            return try Self.fetchTenant(db, id: id)
        }
    }

    /// Renames a tenant. The schema does not change.
    func rename(_ slug: TenantSlug, to newSlug: TenantSlug) async throws -> Tenant {
        try await write { db in
            guard let tenant = try Self.fetchTenant(db, slug: slug.rawValue) else { throw TenancyError.notFound(slug.rawValue) }
            if try Self.fetchTenant(db, slug: newSlug.rawValue) != nil {
                throw TenancyError(code: .slugTaken, message: "cannot rename \"\(slug)\" to \"\(newSlug)\": that slug is taken; choose another", slug: slug.rawValue)
            }
            guard tenant.state != .deleted else {
                throw TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted and cannot be renamed", slug: slug.rawValue)
            }
            try db.execute(sql: "UPDATE tenants SET slug = ?, updated_at = ? WHERE id = ?", arguments: [newSlug.rawValue, Date().timeIntervalSince1970, tenant.id])
            try Self.log(db, tenantID: tenant.id, kind: "renamed", detail: "\(slug) → \(newSlug)")
            return try Self.fetchTenant(db, id: tenant.id)!
        }
    }

    /// Deletes the row of a spare or provisioning attempt that left nothing behind.
    func removeRow(id: Int64) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM tenant_events WHERE tenant_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM tenants WHERE id = ?", arguments: [id])
        }
    }

    // MARK: - Internals

    /// A row of the registry as the lifecycle and the fleet see it: a tenant, or a spare (no slug).
    struct TenantRow: Sendable {
        var id: Int64
        var slug: String?
        var schema: String
        var state: TenantState
        var level: MigrationLevel?

        static let columns = "id, slug, schema_name, state, migration_file, migration_checksum"

        init(row: Row) {
            self.init(id: row[0], slug: row[1], schema: row[2], state: TenantState(rawValue: row[3]) ?? .failed, level: TenantRegistry.level(file: row[4], checksum: row[5]))
        }

        init(id: Int64, slug: String?, schema: String, state: TenantState, level: MigrationLevel?) {
            (self.id, self.slug, self.schema, self.state, self.level) = (id, slug, schema, state, level)
        }
    }

    static let columns = "id, slug, display_name, schema_name, placement, state, migration_file, migration_checksum, created_at, updated_at, last_error"

    static func tenant(from row: Row) -> Tenant {
        Tenant(
            id: row[0], slug: TenantSlug(registryValue: row[1]), displayName: row[2], schema: row[3], placement: row[4],
            state: TenantState(rawValue: row[5]) ?? .failed, migrationLevel: level(file: row[6], checksum: row[7]),
            createdAt: Date(timeIntervalSince1970: row[8]), updatedAt: Date(timeIntervalSince1970: row[9]), lastError: row[10])
    }

    static func level(file: String?, checksum: String?) -> MigrationLevel? {
        guard let file, let checksum else { return nil }
        return MigrationLevel(lastFile: file, setChecksum: checksum)
    }

    static func fetchTenant(_ db: Database, slug: String) throws -> Tenant? {
        try Row.fetchOne(db, sql: "SELECT \(columns) FROM tenants WHERE slug = ?", arguments: [slug]).map(tenant(from:))
    }

    static func fetchTenant(_ db: Database, id: Int64) throws -> Tenant? {
        try Row.fetchOne(db, sql: "SELECT \(columns) FROM tenants WHERE id = ? AND slug IS NOT NULL", arguments: [id]).map(tenant(from:))
    }

    static func fetchRow(_ db: Database, id: Int64) throws -> TenantRow? {
        try Row.fetchOne(db, sql: "SELECT \(TenantRow.columns) FROM tenants WHERE id = ?", arguments: [id]).map(TenantRow.init(row:))
    }

    private static func move(_ db: Database, id: Int64, from current: TenantRow, to state: TenantState, event: String, detail: String?, level: MigrationLevel?, lastError: String?) throws -> TenantRow {
        guard current.state.canMove(to: state) else {
            let name = current.slug.map { "tenant \"\($0)\"" } ?? "spare schema \(current.schema)"
            throw TenancyError(
                code: current.state == .deleted ? .tenantDeleted : .illegalTransition,
                message: "\(name) is \(current.state.rawValue) and cannot become \(state.rawValue)", slug: current.slug)
        }
        try db.execute(
            sql: """
                UPDATE tenants SET state = ?, updated_at = ?, last_error = ?,
                    migration_file = COALESCE(?, migration_file), migration_checksum = COALESCE(?, migration_checksum)
                WHERE id = ?
                """,
            arguments: [state.rawValue, Date().timeIntervalSince1970, lastError, level?.lastFile, level?.setChecksum, id])
        try log(db, tenantID: id, kind: event, detail: detail ?? lastError)
        var moved = current
        moved.state = state
        if let level { moved.level = level }
        return moved
    }

    static func log(_ db: Database, tenantID: Int64, kind: String, detail: String?) throws {
        try db.execute(sql: "INSERT INTO tenant_events (tenant_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                       arguments: [tenantID, Date().timeIntervalSince1970, kind, detail])
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.read(body)
        } catch let error as TenancyError {
            throw error
        } catch {
            throw Self.translate(error, action: "be read")
        }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.write(body)
        } catch let error as TenancyError {
            throw error
        } catch {
            throw Self.translate(error, action: "be written")
        }
    }

    private static func translate(_ error: any Error, action: String) -> TenancyError {
        if let error = error as? DatabaseError {
            if error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                return TenancyError(code: .registryBusy, message: "the tenant registry stayed locked by another process for more than 10 s; try again", underlying: error)
            }
            if error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                return TenancyError(code: .slugTaken, message: "the tenant registry already has this tenant or schema", underlying: error)
            }
            return TenancyError(code: .registryFailed, message: "the tenant registry could not \(action): \(error.message ?? "\(error.resultCode)")", underlying: error)
        }
        return TenancyError.registry(action, error)
    }
}
