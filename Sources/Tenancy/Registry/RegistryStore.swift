import Foundation

/// Where the registry's rows live: a SQLite file (``SQLiteRegistryStore``) or a schema of a
/// PostgreSQL database (``PostgresRegistryStore``). Both behave the same; every write is one
/// transaction.
protocol RegistryStore: RegistryWriter {
    /// Where the registry is, for messages: a file path, or a schema and a masked URL.
    var location: String { get }

    /// The registry's own record, once ``prepare(creating:)`` has read it.
    var preparedInfo: RegistryInfo? { get }

    /// Reads the registry's own record, creating the tables first when `creating` is set.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryNotFound`` when the
    ///   registry does not exist and `creating` is not set, or
    ///   ``TenancyError/Code/registryTooNew`` when a newer version wrote it.
    func prepare(creating: Bool) async throws -> RegistryInfo

    /// Records the database, schema prefix and migration module the registry describes, or
    /// checks them against the recorded ones.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryMismatch``.
    func bind(database: DatabaseIdentity, schemaPrefix: String, migrationModule: String) async throws -> RegistryInfo

    // MARK: Tenants

    func record(slug: String) async throws -> TenantRecord?
    func record(id: Int64) async throws -> TenantRecord?
    /// The row of `record` once no write conditioned on `record`'s generation can still apply:
    /// for a write whose answer was lost. A write still running is waited for; one the server
    /// has not yet started is fenced off (the generation moves on, nothing else changes).
    /// - Returns: The row, and whether it was fenced: then that write did not happen.
    func settledRecord(after record: TenantRecord) async throws -> (row: TenantRecord?, fenced: Bool)
    /// Tenants (rows with a slug) in slug order.
    func tenants(in state: TenantState?, limit: Int?, offset: Int) async throws -> [Tenant]
    /// Every row in `states` (every row when `nil`): tenants in slug order, then spares by id.
    func records(in states: Set<TenantState>?) async throws -> [TenantRecord]
    func countByState() async throws -> [TenantState: Int]
    /// Spares (on `placement`, or on every placement when `nil`), oldest first.
    func spares(limit: Int?, placement: String?) async throws -> [TenantRecord]
    /// Spares on `placement` at `level` whose id is above `id`, oldest first.
    func spares(at level: MigrationLevel?, placement: String, after id: Int64, limit: Int) async throws -> [TenantRecord]
    func events(tenantID: Int64, limit: Int) async throws -> [TenantEvent]

    // MARK: Placements

    /// Every placement: `default` first, then by name.
    func placements() async throws -> [Placement]
    /// Adds a placement.
    /// - Throws: ``TenancyError/Code/placementExists`` when its name or its database is taken.
    func insertPlacement(_ placement: Placement) async throws
    /// Changes a placement's state or weight and returns it.
    /// - Throws: ``TenancyError/Code/placementNotFound``.
    func updatePlacement(_ name: String, state: Placement.State?, weight: Int?) async throws -> Placement
    /// Removes a draining placement (never the default) that no tenant, spare or move names,
    /// in one conditional write.
    /// - Throws: ``TenancyError/Code/placementNotFound``, or ``TenancyError/Code/invalidArgument``
    ///   naming what still holds it.
    func removePlacement(_ name: String) async throws
    /// The rows on each placement by state, deleted rows left out.
    func countByPlacement() async throws -> [String: PlacementCounts]

    // MARK: Fleet ledger

    /// Records a new run over `tenantIDs`, all pending; runs still marked `running` are marked
    /// `interrupted` (the caller holds the fleet lock, so their processes are gone).
    func beginFleetRun(tenantIDs: [Int64], target: MigrationLevel?, parameters: String) async throws -> Int64
    /// Makes a run's failed and abandoned items pending again; returns the pending tenant ids in run order.
    func reopenFleetRun(id: Int64, target: MigrationLevel?) async throws -> [Int64]
    /// Marks an item running; returns its position, attempts, and the tenant's row now.
    func startFleetItem(runID: Int64, tenantID: Int64) async throws -> (position: Int, attempts: Int, tenant: TenantRecord?)
    /// Records how an item ended and, with `level`, the tenant's new migration level.
    func finishFleetItem(runID: Int64, tenantID: Int64, status: FleetRunItem.Status, error: String?, durationMilliseconds: Int, filesApplied: [String], level: MigrationLevel?) async throws
    func finishFleetRun(id: Int64, status: FleetRun.Status, error: String?) async throws
    func fleetRuns(limit: Int) async throws -> [FleetRun]
    func fleetRun(id: Int64) async throws -> FleetRun?
    func fleetRunItems(runID: Int64, statuses: Set<FleetRunItem.Status>?) async throws -> [FleetRunItem]

    // MARK: Copying

    /// Every row of every table.
    func snapshot() async throws -> RegistrySnapshot
    /// Writes `snapshot` into an empty registry, keeping every id.
    /// - Throws: ``TenancyError/Code/invalidArgument`` when the registry is not empty.
    func restore(_ snapshot: RegistrySnapshot) async throws
}

/// The registry's writes. Each is one transaction, or part of the caller's transaction for a
/// ``PostgresRegistrySession``. A PostgreSQL write announces the slugs it changed in its own
/// statement; the lifecycle announces a SQLite write's after it commits.
protocol RegistryWriter: Sendable {
    /// Inserts a row with its first event.
    /// - Throws: ``TenancyError/Code/slugTaken`` when the slug or schema is taken, or
    ///   ``TenancyError/Code/slugRecentlyReleased``.
    func insert(_ record: TenantRecord, event: TenantEvent.Kind, detail: String?) async throws -> TenantRecord

    /// Writes `change` if the row is still at `record.generation`, logs its event, and
    /// returns the new row.
    /// - Throws: ``TenancyError/Code/concurrentChange`` when the row moved on, or for a
    ///   rename, as ``insert(_:event:detail:)`` for the new slug.
    func update(_ record: TenantRecord, _ change: TenantChange) async throws -> TenantRecord

    /// Hands a spare on `placement` at `level` to `slug` in one transaction: the spare `id`,
    /// or else the oldest. Concurrent claimers never get the same spare.
    /// - Parameter verifyingSchemaExists: Skip spares whose schema is gone. Only for a
    ///   registry in the tenants' own database.
    /// - Returns: The claimed row, or `nil` when no spare is at `level`.
    func claimSpare(id: Int64?, at level: MigrationLevel?, placement: String, slug: TenantSlug, displayName: String?, verifyingSchemaExists: Bool) async throws -> TenantRecord?

    /// Deletes a row that left nothing behind (a spare whose provisioning never committed),
    /// if it is still at `record.generation`.
    func remove(_ record: TenantRecord) async throws

    /// Records a row's migration level without changing its state or generation, unless the
    /// row already records a later file (``MigrationLevel/precedes(file:)``): a level never
    /// goes back, so an older release that checked a schema just before a newer one migrated
    /// it cannot record the older level over the newer.
    /// - Returns: Whether the level was written.
    @discardableResult
    func recordLevel(id: Int64, level: MigrationLevel, event: TenantEvent.Kind?, detail: String?) async throws -> Bool
}

/// The whole content of a registry, for copying it to another store.
struct RegistrySnapshot: Sendable {
    struct Event: Sendable {
        var id: Int64
        var tenantID: Int64
        var at: Date
        var kind: TenantEvent.Kind
        var detail: String?
    }

    struct ReleasedSlug: Sendable {
        var slug: String
        var tenantID: Int64
        var releasedAt: Date
    }

    struct Item: Sendable {
        var runID: Int64
        var item: FleetRunItem
    }

    var info: RegistryInfo
    var placements: [Placement]
    var tenants: [TenantRecord]
    var events: [Event]
    var releasedSlugs: [ReleasedSlug]
    var runs: [FleetRun]
    var items: [Item]
}

/// The text of a change announcement: the slugs whose cached handles are stale, separated by
/// spaces, or `*` for every slug.
enum ChangeAnnouncement {
    static let everything = "*"

    static func payload(_ records: TenantRecord?...) -> String? {
        let slugs = Set(records.compactMap { $0?.slug })
        return slugs.isEmpty ? nil : slugs.sorted().joined(separator: " ")
    }

    /// The slugs a payload names, or `nil` for every slug.
    static func slugs(in payload: String) -> [String]? {
        payload == everything ? nil : payload.split(separator: " ").map(String.init)
    }
}
