import Foundation
public import SchemaDB

/// The tenant registry: every tenant, its schema, lifecycle state and migration level, an
/// event log, and the fleet-run ledger.
///
/// Two stores behave the same: a local SQLite file, the embedded default
/// (``init(path:creatingIfMissing:)``), and a schema of a PostgreSQL database that many
/// replicas and operators share (``init(pool:schema:creatingIfMissing:)``).
///
/// The registry's public face is read-only: tenants change through ``Tenancy``, whose every
/// change is one conditional write, logged in the event log and announced to every process.
public final class TenantRegistry: Sendable {
    /// The default location of the SQLite registry: `.tenancy/registry.sqlite`.
    public static let defaultPath = ".tenancy/registry.sqlite"
    /// The default schema of the PostgreSQL registry: `tenancy`.
    public static let defaultSchema = "tenancy"

    let store: any RegistryStore
    private let createsIfMissing: Bool

    /// Opens the SQLite registry at `path`, bringing its tables up to date.
    /// - Parameter creatingIfMissing: Create the file (mode 0600) when it does not exist.
    ///   Without it, a missing file is an error: a command run from the wrong directory must
    ///   not start an empty registry.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryNotFound``,
    ///   ``TenancyError/Code/registryTooNew`` or ``TenancyError/Code/registryFailed``.
    public convenience init(path: String = TenantRegistry.defaultPath, creatingIfMissing: Bool = false) throws {
        self.init(store: try SQLiteRegistryStore(path: path, creating: creatingIfMissing), createsIfMissing: creatingIfMissing)
    }

    /// A registry in schema `schema` of the database `pool` connects to. Its tables are
    /// checked (and created, with `creatingIfMissing`) on first use.
    ///
    /// When `pool` is also the pool of ``Tenancy``, every change commits in the same
    /// transaction as its DDL: a provisioning writes its row together with `CREATE SCHEMA`.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument`` for a
    ///   schema name that is not a valid identifier.
    public convenience init(pool: DatabasePool, schema: String = TenantRegistry.defaultSchema, creatingIfMissing: Bool = false) throws {
        let identifier: SQLIdentifier
        do {
            identifier = try SQLIdentifier(schema)
        } catch {
            throw TenancyError(code: .invalidArgument, message: "the registry schema \"\(schema.debugDescriptionEscaped)\" is not a valid identifier; use ASCII letters, digits and '_'")
        }
        let database = pool.configuration.map { "\($0)" } ?? "the application's database"
        self.init(store: PostgresRegistryStore(pool: pool, schema: identifier, databaseDescription: database), createsIfMissing: creatingIfMissing)
    }

    /// A registry in memory, for tests and previews.
    public static func inMemory() throws -> TenantRegistry {
        TenantRegistry(store: try SQLiteRegistryStore(inMemory: ()), createsIfMissing: true)
    }

    init(store: any RegistryStore, createsIfMissing: Bool) {
        self.store = store
        self.createsIfMissing = createsIfMissing
    }

    /// Where the registry is: a file path, or a schema and a database with its password masked.
    public var location: String { store.location }

    /// The registry's own record: its id, format, and the database and prefix it describes.
    public func info() async throws -> RegistryInfo {
        try await prepared()
    }

    /// Checks (and creates when allowed) the registry's tables once.
    func prepared() async throws -> RegistryInfo {
        if let info = store.preparedInfo { return info }
        return try await store.prepare(creating: createsIfMissing)
    }

    /// The store, checked and ready for writes.
    func ready() async throws -> any RegistryStore {
        _ = try await prepared()
        return store
    }

    // MARK: - Tenants

    /// The tenant with this slug, or `nil`.
    public func tenant(slug: TenantSlug) async throws -> Tenant? {
        try await ready().record(slug: slug.rawValue)?.tenant
    }

    /// Tenants in slug order, optionally only those in `state`.
    public func tenants(in state: TenantState? = nil, limit: Int? = nil, offset: Int = 0) async throws -> [Tenant] {
        try await ready().tenants(in: state, limit: limit, offset: offset)
    }

    /// The number of tenants in each state (spares count as ``TenantState/spare``).
    public func countByState() async throws -> [TenantState: Int] {
        try await ready().countByState()
    }

    /// Unclaimed spare schemas on `placement` (on every placement when `nil`), oldest
    /// (claimed next) first.
    public func spares(on placement: String? = nil) async throws -> [SpareSchema] {
        try await ready().spares(limit: nil, placement: placement).map(\.spare)
    }

    // MARK: - Placements

    /// Every placement: `default` first, then by name.
    public func placements() async throws -> [Placement] {
        try await ready().placements()
    }

    /// The tenants and spares on each placement, by state; deleted tenants are left out.
    public func countByPlacement() async throws -> [String: PlacementCounts] {
        try await ready().countByPlacement()
    }

    /// The tenant's events, newest first.
    public func events(for slug: TenantSlug, limit: Int = 50) async throws -> [TenantEvent] {
        let store = try await ready()
        guard let record = try await store.record(slug: slug.rawValue) else { return [] }
        return try await store.events(tenantID: record.id, limit: limit)
    }

    // MARK: - Fleet ledger

    /// The most recent fleet runs, newest first.
    public func fleetRuns(limit: Int = 20) async throws -> [FleetRun] {
        try await ready().fleetRuns(limit: limit)
    }

    /// The fleet run `id`, or `nil`.
    public func fleetRun(id: Int64) async throws -> FleetRun? {
        try await ready().fleetRun(id: id)
    }

    /// The items of run `runID` in run order, optionally only those in `statuses`.
    public func fleetRunItems(runID: Int64, statuses: Set<FleetRunItem.Status>? = nil) async throws -> [FleetRunItem] {
        try await ready().fleetRunItems(runID: runID, statuses: statuses)
    }

    // MARK: - Copying

    /// What ``copy(to:)`` copied.
    public struct CopyReport: Sendable, Hashable, Codable {
        public var tenants: Int
        public var events: Int
        public var fleetRuns: Int
        public var fleetRunItems: Int
    }

    /// Copies every tenant, event, released slug and fleet run, with their ids and the
    /// registry's own record, into `target`, which must be empty, and checks the copy.
    ///
    /// Stop every process that changes tenants while a registry is copied, and point them at
    /// the new registry afterwards.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument`` when `target`
    ///   is not empty, or ``TenancyError/Code/registryFailed`` when the copy does not match.
    @discardableResult
    public func copy(to target: TenantRegistry) async throws -> CopyReport {
        let snapshot = try await ready().snapshot()
        try await target.ready().restore(snapshot)
        let copied = try await target.store.snapshot()
        let report = CopyReport(tenants: copied.tenants.count, events: copied.events.count, fleetRuns: copied.runs.count, fleetRunItems: copied.items.count)
        let sameTenants = copied.tenants.count == snapshot.tenants.count && zip(copied.tenants, snapshot.tenants).allSatisfy { $0.matches($1) }
        guard sameTenants, report.events == snapshot.events.count, report.fleetRuns == snapshot.runs.count,
              report.fleetRunItems == snapshot.items.count, copied.info.id == snapshot.info.id
        else {
            throw TenancyError(code: .registryFailed, message: "the copy in \(target.location) does not match \(location); do not use it, and copy again into a new registry")
        }
        return report
    }
}
