import Foundation
import GRDB

/// The columns of the SQLite registry's tables, and how rows map to records. Times are stored
/// as seconds since 1970 (`REAL`), states and event kinds as their raw values.
extension TenantRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "tenants"

    enum Columns {
        static let id = Column("id")
        static let slug = Column("slug")
        static let displayName = Column("display_name")
        static let schema = Column("schema_name")
        static let placement = Column("placement")
        static let state = Column("state")
        static let generation = Column("generation")
        static let migrationFile = Column("migration_file")
        static let migrationChecksum = Column("migration_checksum")
        static let createdAt = Column("created_at")
        static let updatedAt = Column("updated_at")
        static let lastError = Column("last_error")
        static let moveTarget = Column("move_target")
        static let moveReturnState = Column("move_return_state")
        static let moveMode = Column("move_mode")
    }

    init(row: Row) throws {
        let stateName: String = row[Columns.state]
        guard let state = TenantState(rawValue: stateName) else {
            throw TenancyError(code: .registryTooNew, message: "the registry has a tenant in state \"\(stateName.debugDescriptionEscaped)\", which this version does not know; upgrade Tenancy")
        }
        self.init(
            id: row[Columns.id], slug: row[Columns.slug], displayName: row[Columns.displayName], schema: row[Columns.schema],
            placement: row[Columns.placement], state: state, generation: row[Columns.generation],
            migrationFile: row[Columns.migrationFile], migrationChecksum: row[Columns.migrationChecksum],
            createdAt: Date(timeIntervalSince1970: row[Columns.createdAt]), updatedAt: Date(timeIntervalSince1970: row[Columns.updatedAt]),
            lastError: row[Columns.lastError],
            move: TenantMove(target: row[Columns.moveTarget], returnState: row[Columns.moveReturnState], mode: row[Columns.moveMode]))
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.id] = id == 0 ? nil : id
        container[Columns.slug] = slug
        container[Columns.displayName] = displayName
        container[Columns.schema] = schema
        container[Columns.placement] = placement
        container[Columns.state] = state.rawValue
        container[Columns.generation] = generation
        container[Columns.migrationFile] = migrationFile
        container[Columns.migrationChecksum] = migrationChecksum
        container[Columns.createdAt] = createdAt.timeIntervalSince1970
        container[Columns.updatedAt] = updatedAt.timeIntervalSince1970
        container[Columns.lastError] = lastError
        container[Columns.moveTarget] = move?.target
        container[Columns.moveReturnState] = move?.returnState.rawValue
        container[Columns.moveMode] = move?.mode.rawValue
    }

    /// The assignments that turn a row into this record, every column but the id.
    var assignments: [ColumnAssignment] {
        [
            Columns.slug.set(to: slug), Columns.displayName.set(to: displayName), Columns.schema.set(to: schema),
            Columns.placement.set(to: placement), Columns.state.set(to: state.rawValue), Columns.generation.set(to: generation),
            Columns.migrationFile.set(to: migrationFile), Columns.migrationChecksum.set(to: migrationChecksum),
            Columns.createdAt.set(to: createdAt.timeIntervalSince1970), Columns.updatedAt.set(to: updatedAt.timeIntervalSince1970),
            Columns.lastError.set(to: lastError), Columns.moveTarget.set(to: move?.target),
            Columns.moveReturnState.set(to: move?.returnState.rawValue), Columns.moveMode.set(to: move?.mode.rawValue),
        ]
    }
}

/// A row of `tenant_events`.
struct TenantEventRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "tenant_events"

    enum Columns {
        static let id = Column("id")
        static let tenantID = Column("tenant_id")
        static let at = Column("at")
        static let kind = Column("kind")
        static let detail = Column("detail")
    }

    var id: Int64?
    var tenantID: Int64
    var at: Date
    var kind: TenantEvent.Kind
    var detail: String?

    init(id: Int64? = nil, tenantID: Int64, at: Date, kind: TenantEvent.Kind, detail: String?) {
        (self.id, self.tenantID, self.at, self.kind, self.detail) = (id, tenantID, at, kind, detail)
    }

    init(row: Row) throws {
        let kindName: String = row[Columns.kind]
        guard let kind = TenantEvent.Kind(rawValue: kindName) else {
            throw TenancyError(code: .registryTooNew, message: "the registry has an event of kind \"\(kindName.debugDescriptionEscaped)\", which this version does not know; upgrade Tenancy")
        }
        self.init(id: row[Columns.id], tenantID: row[Columns.tenantID], at: Date(timeIntervalSince1970: row[Columns.at]), kind: kind, detail: row[Columns.detail])
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.id] = id
        container[Columns.tenantID] = tenantID
        container[Columns.at] = at.timeIntervalSince1970
        container[Columns.kind] = kind.rawValue
        container[Columns.detail] = detail
    }

    var event: TenantEvent { TenantEvent(kind: kind, at: at, detail: detail) }
}

/// A row of `released_slugs`: a slug given up by a rename, and when.
struct ReleasedSlugRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "released_slugs"

    enum Columns {
        static let slug = Column("slug")
        static let tenantID = Column("tenant_id")
        static let releasedAt = Column("released_at")
    }

    var slug: String
    var tenantID: Int64
    var releasedAt: Date

    init(slug: String, tenantID: Int64, releasedAt: Date) {
        (self.slug, self.tenantID, self.releasedAt) = (slug, tenantID, releasedAt)
    }

    init(row: Row) {
        self.init(slug: row[Columns.slug], tenantID: row[Columns.tenantID], releasedAt: Date(timeIntervalSince1970: row[Columns.releasedAt]))
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.slug] = slug
        container[Columns.tenantID] = tenantID
        container[Columns.releasedAt] = releasedAt.timeIntervalSince1970
    }
}

/// A row of `fleet_runs`.
struct FleetRunRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "fleet_runs"

    enum Columns {
        static let id = Column("id")
        static let startedAt = Column("started_at")
        static let finishedAt = Column("finished_at")
        static let status = Column("status")
        static let targetFile = Column("target_file")
        static let targetChecksum = Column("target_checksum")
        static let parameters = Column("parameters")
        static let error = Column("error")
    }

    var id: Int64?
    var startedAt: Date
    var finishedAt: Date?
    var status: FleetRun.Status
    var target: MigrationLevel?
    var parameters: String?
    var error: String?

    init(id: Int64?, startedAt: Date, finishedAt: Date?, status: FleetRun.Status, target: MigrationLevel?, parameters: String?, error: String?) {
        (self.id, self.startedAt, self.finishedAt, self.status, self.target, self.parameters, self.error) = (id, startedAt, finishedAt, status, target, parameters, error)
    }

    init(row: Row) {
        let file: String? = row[Columns.targetFile]
        let checksum: String? = row[Columns.targetChecksum]
        let finished: Double? = row[Columns.finishedAt]
        self.init(
            id: row[Columns.id], startedAt: Date(timeIntervalSince1970: row[Columns.startedAt]), finishedAt: finished.map(Date.init(timeIntervalSince1970:)),
            status: FleetRun.Status(rawValue: row[Columns.status]) ?? .interrupted,
            target: file.flatMap { file in checksum.map { MigrationLevel(lastFile: file, setChecksum: $0) } },
            parameters: row[Columns.parameters], error: row[Columns.error])
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.id] = id
        container[Columns.startedAt] = startedAt.timeIntervalSince1970
        container[Columns.finishedAt] = finishedAt?.timeIntervalSince1970
        container[Columns.status] = status.rawValue
        container[Columns.targetFile] = target?.lastFile
        container[Columns.targetChecksum] = target?.setChecksum
        container[Columns.parameters] = parameters
        container[Columns.error] = error
    }

    func run(counts: FleetRun.Counts) -> FleetRun {
        FleetRun(id: id ?? 0, status: status, startedAt: startedAt, finishedAt: finishedAt, target: target, parameters: parameters, error: error, counts: counts)
    }
}

/// A row of `fleet_run_items`.
struct FleetRunItemRecord: FetchableRecord, PersistableRecord {
    static let databaseTableName = "fleet_run_items"

    enum Columns {
        static let runID = Column("run_id")
        static let tenantID = Column("tenant_id")
        static let position = Column("position")
        static let status = Column("status")
        static let attempts = Column("attempts")
        static let error = Column("error")
        static let durationMilliseconds = Column("duration_ms")
        static let filesApplied = Column("files_applied")
        static let startedAt = Column("started_at")
        static let finishedAt = Column("finished_at")
    }

    var runID: Int64
    var tenantID: Int64
    var position: Int
    var status: FleetRunItem.Status
    var attempts: Int
    var error: String?
    var durationMilliseconds: Int?
    var filesApplied: [String]
    var startedAt: Date?
    var finishedAt: Date?

    init(runID: Int64, item: FleetRunItem) {
        self.runID = runID
        (tenantID, position, status, attempts) = (item.tenantID, item.position, item.status, item.attempts)
        (error, durationMilliseconds, filesApplied, startedAt, finishedAt) = (item.error, item.durationMilliseconds, item.filesApplied, item.startedAt, item.finishedAt)
    }

    init(row: Row) {
        let files: String? = row[Columns.filesApplied]
        let started: Double? = row[Columns.startedAt]
        let finished: Double? = row[Columns.finishedAt]
        runID = row[Columns.runID]
        tenantID = row[Columns.tenantID]
        position = row[Columns.position]
        status = FleetRunItem.Status(rawValue: row[Columns.status]) ?? .pending
        attempts = row[Columns.attempts]
        error = row[Columns.error]
        durationMilliseconds = row[Columns.durationMilliseconds]
        filesApplied = files.map { $0.isEmpty ? [] : $0.components(separatedBy: "\n") } ?? []
        startedAt = started.map(Date.init(timeIntervalSince1970:))
        finishedAt = finished.map(Date.init(timeIntervalSince1970:))
    }

    func encode(to container: inout PersistenceContainer) {
        container[Columns.runID] = runID
        container[Columns.tenantID] = tenantID
        container[Columns.position] = position
        container[Columns.status] = status.rawValue
        container[Columns.attempts] = attempts
        container[Columns.error] = error
        container[Columns.durationMilliseconds] = durationMilliseconds
        container[Columns.filesApplied] = filesApplied.joined(separator: "\n")
        container[Columns.startedAt] = startedAt?.timeIntervalSince1970
        container[Columns.finishedAt] = finishedAt?.timeIntervalSince1970
    }

    func item(slug: String?, schema: String) -> FleetRunItem {
        FleetRunItem(tenantID: tenantID, slug: slug, schema: schema, position: position, status: status, attempts: attempts, error: error,
                     durationMilliseconds: durationMilliseconds, filesApplied: filesApplied, startedAt: startedAt, finishedAt: finishedAt)
    }
}
