import Foundation
import GRDB
import SchemaDB
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The registry in a local SQLite file (WAL mode): the embedded default.
///
/// Reads are concurrent; writes are serialised by SQLite, so a conditional write sees every
/// write committed before it. PostgreSQL is not part of its transactions: the lifecycle
/// announces its changes right after they commit.
final class SQLiteRegistryStore: RegistryStore {
    let path: String?
    let writer: any DatabaseWriter
    private let prepared = Mutex<RegistryInfo?>(nil)

    var location: String { path ?? "(in memory)" }

    /// Opens the registry file at `path`, bringing its tables up to date. Creates it (mode
    /// 0600) only when `creating` is set; two processes creating it at once both succeed.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryNotFound``,
    ///   ``TenancyError/Code/registryTooNew`` or ``TenancyError/Code/registryFailed``.
    init(path: String, creating: Bool) throws {
        let url = URL(fileURLWithPath: path)
        if !FileManager.default.fileExists(atPath: path) {
            guard creating else {
                throw TenancyError(
                    code: .registryNotFound,
                    message: "there is no tenant registry at \(url.path); create one with `tenantctl init`, or point --registry (TENANCY_REGISTRY) at the existing one")
            }
            try Self.createFile(at: url)
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        do {
            self.writer = try FileLock.withExclusiveLock(path: path + ".lock") {
                let pool = try DatabasePool(path: path, configuration: configuration)
                try Self.migrate(pool, location: path)
                return pool
            }
        } catch let error as TenancyError {
            throw error
        } catch {
            throw TenancyError(code: .registryFailed, message: "cannot open the tenant registry \(path): \(error); check the path, its permissions and that its disk has room", underlying: error)
        }
        self.path = path
    }

    /// A registry in memory, for tests and previews.
    init(inMemory: Void) throws {
        let queue = try DatabaseQueue()
        try Self.migrate(queue, location: "(in memory)")
        self.writer = queue
        self.path = nil
    }

    private static func migrate(_ writer: any DatabaseWriter, location: String) throws {
        if try writer.read({ try migrator.hasBeenSuperseded($0) }) {
            throw TenancyError(
                code: .registryTooNew,
                message: "the tenant registry \(location) was written by a newer version of Tenancy; upgrade this program before using it")
        }
        try migrator.migrate(writer)
    }

    /// Creates an empty file readable and writable by its owner only; SQLite gives its WAL and
    /// shared-memory files the same mode.
    private static func createFile(at url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw TenancyError(code: .registryFailed, message: "cannot create the registry directory \(url.deletingLastPathComponent().path): \(error.localizedDescription)")
        }
        let descriptor = open(url.path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            close(descriptor)
        } else if errno != EEXIST {
            throw TenancyError(code: .registryFailed, message: "cannot create the registry file \(url.path) (\(String(cString: strerror(errno)))); check the directory's permissions")
        }
    }

    // MARK: - The registry's record

    var preparedInfo: RegistryInfo? { prepared.withLock { $0 } }

    func prepare(creating: Bool) async throws -> RegistryInfo {
        let info = try await read { db in try Self.info(db) }
        prepared.withLock { $0 = info }
        return info
    }

    func bind(database: DatabaseIdentity, schemaPrefix: String, migrationModule: String) async throws -> RegistryInfo {
        let location = self.location
        let info = try await write { db in
            let info = try Self.info(db)
            let rows = try RegistryMeta.binding(info, database: database, schemaPrefix: schemaPrefix, migrationModule: migrationModule, location: location)
            for (key, value) in rows {
                try db.execute(sql: "INSERT OR REPLACE INTO registry_meta (key, value) VALUES (?, ?)", arguments: [key, value])
            }
            return rows.isEmpty ? info : try Self.info(db)
        }
        prepared.withLock { $0 = info }
        return info
    }

    private static func info(_ db: Database) throws -> RegistryInfo {
        let rows = try Row.fetchAll(db, sql: "SELECT key, value FROM registry_meta")
        let values = Dictionary(rows.map { ($0[0] as String, $0[1] as String) }, uniquingKeysWith: { $1 })
        return try RegistryMeta.info(values, formatVersion: try migrator.appliedMigrations(db).count)
    }

    // MARK: - Tenants

    func record(slug: String) async throws -> TenantRecord? {
        try await read { db in try TenantRecord.filter(TenantRecord.Columns.slug == slug).fetchOne(db) }
    }

    func record(id: Int64) async throws -> TenantRecord? {
        try await read { db in try TenantRecord.fetchOne(db, key: id) }
    }

    /// A SQLite write completes in this process: its outcome is never lost in flight.
    func settledRecord(after record: TenantRecord) async throws -> (row: TenantRecord?, fenced: Bool) {
        (try await self.record(id: record.id), false)
    }

    func tenants(in state: TenantState?, limit: Int?, offset: Int) async throws -> [Tenant] {
        try await read { db in
            var sql = "SELECT * FROM tenants WHERE slug IS NOT NULL"
            var arguments: StatementArguments = []
            if let state {
                sql += " AND state = ?"
                arguments += [state.rawValue]
            }
            sql += " ORDER BY slug LIMIT ? OFFSET ?"
            arguments += [limit ?? -1, offset]
            return try Array(TenantRecord.fetchCursor(db, sql: sql, arguments: arguments).compactMap(\.tenant))
        }
    }

    func records(in states: Set<TenantState>?) async throws -> [TenantRecord] {
        try await read { db in
            var request = TenantRecord.all()
            if let states { request = request.filter(states.map(\.rawValue).contains(TenantRecord.Columns.state)) }
            return try request.order(TenantRecord.Columns.slug == nil, TenantRecord.Columns.slug, TenantRecord.Columns.id).fetchAll(db)
        }
    }

    func countByState() async throws -> [TenantState: Int] {
        try await read { db in
            var counts: [TenantState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, count(*) FROM tenants GROUP BY state") {
                if let state = TenantState(rawValue: row[0]) { counts[state] = row[1] }
            }
            return counts
        }
    }

    func spares(limit: Int?, placement: String?) async throws -> [TenantRecord] {
        try await read { db in
            var request = TenantRecord.filter(TenantRecord.Columns.state == TenantState.spare.rawValue).order(TenantRecord.Columns.id)
            if let placement { request = request.filter(TenantRecord.Columns.placement == placement) }
            return try (limit.map { request.limit($0) } ?? request).fetchAll(db)
        }
    }

    func spares(at level: MigrationLevel?, placement: String, after id: Int64, limit: Int) async throws -> [TenantRecord] {
        try await read { db in
            try TenantRecord.filter(
                TenantRecord.Columns.state == TenantState.spare.rawValue && TenantRecord.Columns.id > id && TenantRecord.Columns.placement == placement
                    && TenantRecord.Columns.migrationFile == level?.lastFile && TenantRecord.Columns.migrationChecksum == level?.setChecksum)
                .order(TenantRecord.Columns.id).limit(limit).fetchAll(db)
        }
    }

    func events(tenantID: Int64, limit: Int) async throws -> [TenantEvent] {
        try await read { db in
            try TenantEventRecord.filter(TenantEventRecord.Columns.tenantID == tenantID)
                .order(TenantEventRecord.Columns.id.desc).limit(limit).fetchAll(db).map(\.event)
        }
    }

    func insert(_ record: TenantRecord, event: TenantEvent.Kind, detail: String?) async throws -> TenantRecord {
        try await write { db in
            if let slug = record.slug { try Self.checkSlugIsFree(db, slug, for: nil, at: record.createdAt) }
            try Self.checkSchemaIsFree(db, record.schema)
            try Self.checkPlacementExists(db, record.placement)
            try record.insert(db)
            var inserted = record
            inserted.id = db.lastInsertedRowID
            try Self.log(db, tenantID: inserted.id, kind: event, detail: detail, at: record.createdAt)
            return inserted
        }
    }

    func update(_ record: TenantRecord, _ change: TenantChange) async throws -> TenantRecord {
        let next = record.applying(change, at: Date())
        return try await write { db in
            let renamed = next.slug != record.slug
            if renamed, let slug = next.slug { try Self.checkSlugIsFree(db, slug, for: record.id, at: next.updatedAt) }
            if next.placement != record.placement { try Self.checkPlacementExists(db, next.placement) }
            if let target = next.move?.target, target != record.move?.target { try Self.checkPlacementExists(db, target) }
            let changed = try TenantRecord
                .filter(TenantRecord.Columns.id == record.id && TenantRecord.Columns.generation == record.generation)
                .updateAll(db, next.assignments)
            guard changed == 1 else { throw TenancyError.concurrentChange(record, now: try TenantRecord.fetchOne(db, key: record.id)) }
            if renamed, let released = record.slug {
                try Self.release(db, slug: released, tenantID: record.id, at: next.updatedAt)
            }
            try Self.log(db, tenantID: record.id, kind: change.event, detail: change.detail, at: next.updatedAt)
            return next
        }
    }

    func claimSpare(id: Int64?, at level: MigrationLevel?, placement: String, slug: TenantSlug, displayName: String?, verifyingSchemaExists: Bool) async throws -> TenantRecord? {
        precondition(!verifyingSchemaExists, "a SQLite registry cannot see the tenants' schemas")
        let now = Date()
        return try await write { db in
            try Self.checkSlugIsFree(db, slug.rawValue, for: nil, at: now)
            var spares = TenantRecord.filter(
                TenantRecord.Columns.state == TenantState.spare.rawValue && TenantRecord.Columns.placement == placement
                    && TenantRecord.Columns.migrationFile == level?.lastFile && TenantRecord.Columns.migrationChecksum == level?.setChecksum)
            if let id { spares = spares.filter(TenantRecord.Columns.id == id) }
            guard let spare = try spares.order(TenantRecord.Columns.id).fetchOne(db) else { return nil }
            let claimed = spare.applying(TenantChange(state: .active, slug: slug, displayName: .some(displayName), event: .claimed), at: now)
            try TenantRecord.filter(TenantRecord.Columns.id == spare.id).updateAll(db, claimed.assignments)
            try Self.log(db, tenantID: spare.id, kind: .claimed, detail: nil, at: now)
            return claimed
        }
    }

    func remove(_ record: TenantRecord) async throws {
        try await write { db in
            try TenantEventRecord.filter(TenantEventRecord.Columns.tenantID == record.id).deleteAll(db)
            let deleted = try TenantRecord
                .filter(TenantRecord.Columns.id == record.id && TenantRecord.Columns.generation == record.generation).deleteAll(db)
            guard deleted == 1 else { throw TenancyError.concurrentChange(record, now: try TenantRecord.fetchOne(db, key: record.id)) }
        }
    }

    @discardableResult
    func recordLevel(id: Int64, level: MigrationLevel, event: TenantEvent.Kind?, detail: String?) async throws -> Bool {
        let now = Date()
        return try await write { db in
            if let recorded = try String.fetchOne(db, sql: "SELECT migration_file FROM tenants WHERE id = ?", arguments: [id]),
               level.precedes(file: recorded) {
                return false
            }
            try TenantRecord.filter(TenantRecord.Columns.id == id).updateAll(db, [
                TenantRecord.Columns.migrationFile.set(to: level.lastFile), TenantRecord.Columns.migrationChecksum.set(to: level.setChecksum),
                TenantRecord.Columns.updatedAt.set(to: now.timeIntervalSince1970),
            ])
            if let event { try Self.log(db, tenantID: id, kind: event, detail: detail, at: now) }
            return true
        }
    }

    // MARK: - Rules every write checks

    /// Refuses a slug another row holds, or one given up by another tenant's rename less than
    /// the reuse delay ago. The tenant that gave a slug up may take it back at once.
    private static func checkSlugIsFree(_ db: Database, _ slug: String, for tenantID: Int64?, at now: Date) throws {
        if let holder = try TenantRecord.filter(TenantRecord.Columns.slug == slug).fetchOne(db), holder.id != tenantID {
            throw TenancyError.slugTaken(slug, by: holder)
        }
        guard let released = try ReleasedSlugRecord.fetchOne(db, key: slug), released.tenantID != tenantID else { return }
        let delay = try reuseDelay(db)
        let age = Duration.seconds(now.timeIntervalSince(released.releasedAt))
        if age < delay { throw TenancyError.slugRecentlyReleased(slug, availableIn: delay - age) }
    }

    private static func checkSchemaIsFree(_ db: Database, _ schema: String) throws {
        if try TenantRecord.filter(TenantRecord.Columns.schema == schema).fetchCount(db) > 0 {
            throw TenancyError(code: .slugTaken, message: "the registry already has a row for schema \(schema); provision again to get a fresh schema name")
        }
    }

    private static func release(_ db: Database, slug: String, tenantID: Int64, at now: Date) throws {
        let delay = try reuseDelay(db)
        try ReleasedSlugRecord.filter(ReleasedSlugRecord.Columns.releasedAt < now.timeIntervalSince1970 - Double(delay.wholeMilliseconds) / 1000).deleteAll(db)
        try ReleasedSlugRecord(slug: slug, tenantID: tenantID, releasedAt: now).save(db)
    }

    private static func reuseDelay(_ db: Database) throws -> Duration {
        let milliseconds = try String.fetchOne(db, sql: "SELECT value FROM registry_meta WHERE key = ?", arguments: [RegistryMeta.slugReuseDelay]).flatMap(Int64.init)
        return milliseconds.map { .milliseconds($0) } ?? RegistryMeta.defaultSlugReuseDelay
    }

    static func log(_ db: Database, tenantID: Int64, kind: TenantEvent.Kind, detail: String?, at: Date) throws {
        try TenantEventRecord(tenantID: tenantID, at: at, kind: kind, detail: detail).insert(db)
    }

    // MARK: - Access

    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.read(body)
        } catch let error as TenancyError {
            throw error
        } catch {
            throw Self.translate(error, action: "be read", location: location)
        }
    }

    /// Runs `body` in one write transaction.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.write(body)
        } catch let error as TenancyError {
            throw error
        } catch {
            throw Self.translate(error, action: "be written", location: location)
        }
    }

    /// The results of a file that cannot be written: a full disk, a size limit, a read-only file.
    private static let storageCodes: [ResultCode] = [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN]

    private static func translate(_ error: any Error, action: String, location: String) -> TenancyError {
        if let error = error as? DatabaseError {
            if error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                return TenancyError(code: .registryBusy, message: "the tenant registry \(location) stayed locked by another process for more than 10 s; try again", underlying: error)
            }
            if error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                return TenancyError(code: .slugTaken, message: "the tenant registry already has this tenant or schema", underlying: error)
            }
            let advice = Self.storageCodes.contains(error.resultCode) ? "; check that its disk has room and the file and its directory are writable" : ""
            return TenancyError(code: .registryFailed, message: "the tenant registry \(location) could not \(action): \(error.message ?? "\(error.resultCode)")\(advice)", underlying: error)
        }
        return TenancyError(code: .registryFailed, message: "the tenant registry \(location) could not \(action): \(error)", underlying: error)
    }
}
