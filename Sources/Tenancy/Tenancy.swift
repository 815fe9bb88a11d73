public import Foundation
public import Logging
public import PostgresNIO
public import SchemaDB
public import ServiceLifecycle
import Synchronization

/// Schema-per-tenant PostgreSQL for a SaaS backend: the registry, the tenants' lifecycle and
/// the directory of tenant handles, over ONE shared pool.
///
/// Build it from a ``SchemaDB/DatabaseConfig`` (it owns its pool) or from the application's
/// `PostgresClient` (it borrows it), and run it as a `Service`: running, it listens for the
/// changes other processes make and evicts their tenants from its directory at once.
///
/// ```swift
/// let tenancy = try Tenancy(client: app.postgresClient, configuration: .init(), logger: logger)
/// let acme = try await tenancy.database(for: "acme")
/// let open = try await acme.fetchValue("SELECT count(*) FROM {{tables.invoices}} WHERE paid_at IS NULL", as: Int.self)
/// ```
///
/// `Tenancy` is the only way to change a tenant: every change is one conditional registry
/// write, announced to every process.
public final class Tenancy: Service, Sendable {
    /// Tenancy settings. Every one has a default.
    public struct Configuration: Sendable {
        /// Where the registry is. Defaults to the SQLite file `.tenancy/registry.sqlite`.
        public var registry: RegistryLocation = .sqlite(path: TenantRegistry.defaultPath)
        /// Create the registry when it does not exist. Defaults to `true`; a server that must
        /// never start with an empty registry sets it to `false`.
        public var createsRegistry: Bool = true
        /// The tenant migration set; `nil` loads none, and the operations that need one
        /// (onboarding, spares, fleet runs, reconcile) throw. Defaults to `tenant-migrations`.
        public var migrationsDirectory: URL? = URL(fileURLWithPath: "tenant-migrations")
        /// The migration module of the tenant migration set. Defaults to `tenant`.
        public var migrationModule: String = "tenant"
        /// The prefix of generated schema names. Defaults to `tenant_`.
        public var schemaPrefix: String = "tenant_"
        /// The longest wait for a schema's migration lock, and for each table lock while
        /// migrating or dropping a schema. Defaults to 30 s.
        public var lockTimeout: Duration = .seconds(30)
        /// Directory cache settings.
        public var directory: TenantDirectory.Configuration = .init()
        /// Listen for other processes' changes while running (one connection of the pool).
        /// Defaults to `true`; a short-lived tool that serves no tenant turns it off.
        public var listensForChanges: Bool = true
        /// How this process connects to placements, by name, when the URL recorded in the
        /// registry (which holds no password) is not enough. A placement not named here is
        /// reached at its recorded URL, with the password from `PGPASSWORD` or `~/.pgpass`.
        public var placementDatabases: [String: DatabaseConfig] = [:]
        /// Connections of each placement's pool, other than the default placement's.
        /// Defaults to 8.
        public var connectionsPerPlacement: Int = 8
        /// The most connections the pools of the placements other than the default one hold
        /// together; opening one more pool past it fails. Defaults to 64.
        public var maximumPlacementConnections: Int = 64

        public init() {}

        /// The settings `tenantctl` reads, from `environment`: `TENANCY_REGISTRY` (a file or a
        /// `postgres://` URL), `TENANCY_REGISTRY_SCHEMA`, `TENANCY_SCHEMA_PREFIX`,
        /// `TENANCY_MIGRATIONS` and each `TENANCY_PLACEMENT_<NAME>_URL` (placement `eu-2` from
        /// `TENANCY_PLACEMENT_EU_2_URL`); the rest keep their defaults.
        /// - Parameter database: The tenants' database: a registry URL naming it shares its pool.
        /// - Throws: As ``RegistryLocation/init(setting:schema:environment:)``.
        public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment, database: DatabaseConfig) throws -> Self {
            func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            var configuration = Self()
            if let registry = value("TENANCY_REGISTRY") {
                let location = try RegistryLocation(setting: registry, schema: value("TENANCY_REGISTRY_SCHEMA") ?? TenantRegistry.defaultSchema, environment: environment)
                configuration.registry = location.sharingPool(with: database)
            }
            if let prefix = value("TENANCY_SCHEMA_PREFIX") { configuration.schemaPrefix = prefix }
            if let directory = value("TENANCY_MIGRATIONS") { configuration.migrationsDirectory = URL(fileURLWithPath: directory) }
            configuration.placementDatabases = try placementDatabases(from: environment)
            return configuration
        }

        /// The placements' databases that `environment` names, one `TENANCY_PLACEMENT_<NAME>_URL`
        /// each (placement `eu-2` from `TENANCY_PLACEMENT_EU_2_URL`); a URL without a password
        /// takes it from `PGPASSWORD` or the password file.
        /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument`` for a
        ///   variable that names no valid placement; `SchemaDBError` for a URL that cannot be used.
        public static func placementDatabases(from environment: [String: String]) throws -> [String: DatabaseConfig] {
            var databases: [String: DatabaseConfig] = [:]
            for (variable, url) in environment where variable.hasPrefix("TENANCY_PLACEMENT_") && variable.hasSuffix("_URL") && !url.isEmpty {
                let name = variable.dropFirst("TENANCY_PLACEMENT_".count).dropLast("_URL".count).lowercased().replacingOccurrences(of: "_", with: "-")
                guard Placement.problem(withName: name) == nil, name != Placement.defaultName else {
                    throw TenancyError(code: .invalidArgument, message: "\(variable) does not name a placement; use TENANCY_PLACEMENT_<NAME>_URL with a name like EU_2")
                }
                databases[name] = try DatabaseConfig(url: url).fillingPassword(from: environment)
            }
            return databases
        }
    }

    /// The default placement's pool: the database `Tenancy` was built with.
    public let pool: DatabasePool
    /// The tenant registry, for reading.
    public let registry: TenantRegistry
    /// Cached tenant handles.
    public let directory: TenantDirectory
    /// Migrates every tenant, with a ledger in the registry.
    public let fleet: FleetMigrator
    /// The settings.
    public let configuration: Configuration
    /// The tenant migration set, when one was loaded.
    public var migrations: MigrationSet? { lifecycle.migrations?.set }
    /// The level a fully migrated schema is at; `nil` for an empty or absent set.
    public var currentLevel: MigrationLevel? { lifecycle.migrations?.currentLevel }

    let lifecycle: TenantLifecycle
    let placements: PlacementPools
    /// A pool of the registry's own database, owned, when the registry is in another database.
    private let registryPool: DatabasePool?
    private let binding: RegistryBinding
    let logger: Logger

    /// Creates a `Tenancy` that owns its pool. Run it (``run()``, or in a `ServiceGroup`)
    /// before use.
    public convenience init(databaseConfig: DatabaseConfig, configuration: Configuration = .init(), logger: Logger) throws {
        try self.init(pool: DatabasePool(configuration: databaseConfig, logger: logger), configuration: configuration, logger: logger)
    }

    /// Creates a `Tenancy` over the application's client, which it never runs or shuts down.
    /// - Important: `client` is owned by the caller, who must be running `client.run()`.
    ///   While running, `Tenancy` keeps one of its connections to listen for changes.
    public convenience init(client: PostgresClient, maximumConnections: Int? = nil, configuration: Configuration = .init(), logger: Logger) throws {
        try self.init(pool: DatabasePool(borrowing: client, maximumConnections: maximumConnections, logger: logger), configuration: configuration, logger: logger)
    }

    /// Creates a `Tenancy` over an existing pool.
    /// - Throws: ``TenancyError`` when the schema prefix cannot be used, or the registry cannot
    ///   be opened (``TenancyError/Code/registryNotFound``, ``TenancyError/Code/registryTooNew``),
    ///   or `SchemaDBError` when the migration set cannot be read.
    public init(pool: DatabasePool, configuration: Configuration = .init(), logger: Logger) throws {
        let prefix = configuration.schemaPrefix
        if prefix.isEmpty || prefix.utf8.count > 40 || SQLIdentifier.problem(with: prefix) != nil {
            throw TenancyError(code: .invalidArgument, message: "the schema prefix \"\(prefix.debugDescriptionEscaped)\" cannot be used; use 1 to 40 ASCII letters, digits and '_', starting with a letter or '_'")
        }
        if prefix.lowercased().hasPrefix("pg_") {
            throw TenancyError(code: .invalidArgument, message: "the schema prefix \"\(prefix)\" cannot be used: PostgreSQL reserves schema names starting with pg_; choose another, like tenant_")
        }
        if configuration.listensForChanges, let limit = pool.connectionLimit, limit < 2 {
            throw TenancyError(code: .invalidArgument, message: "listening for changes keeps one connection of the pool, and this pool has \(limit); allow at least 2 connections, or turn listening off")
        }
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
        switch configuration.registry.kind {
        case .sqlite(let path):
            self.registryPool = nil
            self.registry = try TenantRegistry(path: path, creatingIfMissing: configuration.createsRegistry)
        case .postgres(let schema, nil):
            self.registryPool = nil
            self.registry = try TenantRegistry(pool: pool, schema: schema, creatingIfMissing: configuration.createsRegistry)
        case .postgres(let schema, let database?):
            let registryPool = try DatabasePool(configuration: database, logger: logger)
            self.registryPool = registryPool
            self.registry = try TenantRegistry(pool: registryPool, schema: schema, creatingIfMissing: configuration.createsRegistry)
        }
        let migrations = try configuration.migrationsDirectory.map {
            TenantMigrations(set: try MigrationSet(directory: $0), module: configuration.migrationModule, lockTimeout: configuration.lockTimeout)
        }
        if configuration.connectionsPerPlacement < 1 || configuration.maximumPlacementConnections < configuration.connectionsPerPlacement {
            throw TenancyError(code: .invalidArgument, message: "connectionsPerPlacement must be at least 1 and no more than maximumPlacementConnections")
        }
        for name in configuration.placementDatabases.keys where name != Placement.defaultName { try Placement.validate(name: name) }
        let placements = PlacementPools(
            primary: pool, registry: registry, databases: configuration.placementDatabases.filter { $0.key != Placement.defaultName },
            connectionsPerPlacement: configuration.connectionsPerPlacement, connectionBound: configuration.maximumPlacementConnections,
            environment: ProcessInfo.processInfo.environment, logger: logger)
        self.placements = placements
        let binding = RegistryBinding(registry: registry, pool: pool, schemaPrefix: prefix, migrationModule: configuration.migrationModule, directoryTimeToLive: configuration.directory.timeToLive, logger: logger)
        self.binding = binding
        let directory = TenantDirectory(
            placements: placements, registry: registry, configuration: configuration.directory, logger: logger,
            expectsListener: configuration.listensForChanges, migrations: migrations, prepare: { _ = try await binding.ready() })
        self.directory = directory
        self.lifecycle = TenantLifecycle(
            placements: placements, registry: registry, migrations: migrations, schemaPrefix: prefix, lockTimeout: configuration.lockTimeout,
            logger: logger, evict: { directory.invalidate($0) }, changed: { slugs in
                directory.invalidate(slugs)
                await binding.announce(slugs)
            }, ready: { _ = try await binding.ready() })
        self.fleet = FleetMigrator(placements: placements, registry: registry, migrations: migrations, schemaPrefix: prefix, logger: logger, ready: { _ = try await binding.ready() })
    }

    /// Runs an owned pool until shutdown (a borrowed one only waits), and listens for the
    /// registry's change announcements, evicting the tenants they name from the directory.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.pool.run() }
            group.addTask { await self.placements.run() }
            if let registryPool { group.addTask { await registryPool.run() } }
            if configuration.listensForChanges {
                group.addTask { await cancelWhenGracefulShutdown { await self.listen() } }
            }
            await group.waitForAll()
        }
    }

    /// Opens the registry, checks that it describes this database and schema prefix (recording
    /// them the first time), and checks the directory's time to live against the registry's
    /// slug reuse delay. Done once; every operation waits for it.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/registryMismatch``,
    ///   ``TenancyError/Code/registryNotFound``, ``TenancyError/Code/registryTooNew`` or
    ///   ``TenancyError/Code/invalidArgument``.
    @discardableResult
    public func ready() async throws -> RegistryInfo {
        try await binding.ready()
    }

    private func listen() async {
        var pause = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let info = try await ready()
                let pool = (registry.store as? PostgresRegistryStore)?.pool ?? self.pool
                await ChangeListener(pool: pool, channel: info.notificationChannel, directory: directory, logger: logger).run()
                return
            } catch {
                logger.info("the registry is not ready; listening for changes will start once it is", metadata: [LoggingKeys.error: "\(error)"])
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
    }

    // MARK: - Serving

    /// The handle of tenant `slug`, from the directory's cache.
    public func database(for slug: String) async throws -> SchemaDatabase {
        try await directory.database(for: slug)
    }

    /// The tenant with this slug, or `nil`.
    public func tenant(_ slug: String) async throws -> Tenant? {
        try await ready()
        return try await registry.tenant(slug: try TenantSlug(slug))
    }

    // MARK: - Changing tenants

    /// Onboards a tenant: claims a spare schema when one is ready, provisions one otherwise.
    /// Provisioning runs in one PostgreSQL transaction: the tenant is fully provisioned or
    /// untouched.
    /// - Parameter placement: Where the tenant goes; `nil` (the default) picks the open
    ///   placement with the fewest tenants for its weight. A tenant that exists stays where it is.
    @discardableResult
    public func create(_ slug: String, displayName: String? = nil, placement: String? = nil) async throws -> OnboardingReport {
        try await lifecycle.create(try TenantSlug(slug), displayName: displayName, placement: placement)
    }

    /// Pre-provisions `count` spare schemas on `placement`, `concurrency` at a time, each with
    /// the whole migration set applied, so that onboarding claims one with no DDL. Spares an
    /// earlier fill left half-way there (a killed process) are completed first.
    /// - Returns: Every spare now waiting on `placement`, oldest first.
    @discardableResult
    public func fillSpares(count: Int, concurrency: Int = 4, placement: String = Placement.defaultName) async throws -> [SpareSchema] {
        try await lifecycle.fillSpares(count: count, concurrency: concurrency, placement: placement)
    }

    /// Suspends a tenant: every process refuses its handles at once.
    @discardableResult
    public func suspend(_ slug: String) async throws -> Tenant {
        try await lifecycle.suspend(try TenantSlug(slug))
    }

    /// Resumes a suspended tenant.
    @discardableResult
    public func resume(_ slug: String) async throws -> Tenant {
        try await lifecycle.resume(try TenantSlug(slug))
    }

    /// Renames a tenant; its schema does not change. The old slug cannot be taken by another
    /// tenant until the registry's ``RegistryInfo/slugReuseDelay`` has passed.
    @discardableResult
    public func rename(_ slug: String, to newSlug: String) async throws -> Tenant {
        try await lifecycle.rename(try TenantSlug(slug), to: try TenantSlug(newSlug))
    }

    /// Drops a tenant's schema and keeps its tombstone. The tenant stops being served before
    /// its schema is dropped; a drop that fails puts it back as it was.
    ///
    /// > Warning: This deletes the tenant's data; `confirmingDataLoss` must be `true`.
    @discardableResult
    public func delete(_ slug: String, confirmingDataLoss: Bool) async throws -> Tenant {
        try await lifecycle.delete(try TenantSlug(slug), confirmingDataLoss: confirmingDataLoss)
    }

    /// Compares the registry with the database, both ways, and with `fix` repairs what is
    /// safe. See ``ReconcileReport/Kind`` for what is found.
    public func reconcile(fix: Bool = false, concurrency: Int = 4) async throws -> ReconcileReport {
        try await lifecycle.reconcile(fix: fix, concurrency: concurrency)
    }

    // MARK: - Migrating

    /// Brings every tenant and spare up to the current migration set through the fleet migrator,
    /// `concurrency` tenants at a time, waiting up to `fleetLockWait` for a run another process
    /// has started (another instance of the app starting at the same moment). For a script or a
    /// deploy job; a server calls ``prepareForServing(_:)``, which does not stop at a failed tenant.
    /// - Returns: The run, recorded in the registry's ledger.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/migrationFailed`` naming the
    ///   failed tenants and the run to resume, after every other tenant was migrated.
    @discardableResult
    public func migrateAllTenants(concurrency: Int = 4, fleetLockWait: Duration = .seconds(600)) async throws -> FleetReport {
        var options = FleetMigrator.Options()
        options.concurrency = concurrency
        options.fleetLockWait = fleetLockWait
        let report = try await fleet.run(.all, options: options)
        guard report.run.status == .completed else {
            let failures = report.failures
            let cause = failures.isEmpty
                ? report.run.error ?? "it did not finish"
                : "\(failures.count) tenants failed: " + failures.prefix(3).map { "\"\($0.slug ?? $0.schema)\": \($0.error ?? "")" }.joined(separator: "; ")
            throw TenancyError(
                code: .migrationFailed,
                message: "fleet run \(report.run.id) ended \(report.run.status.rawValue) (\(cause)); fix the cause and resume run \(report.run.id)",
                slug: failures.first?.slug)
        }
        return report
    }

    /// The tenant's applied migrations, newest first.
    public func migrationHistory(for slug: String, limit: Int = 50) async throws -> [AppliedMigration] {
        let record = try await lifecycle.record(try TenantSlug(slug))
        guard record.state == .active || record.state == .suspended else { return [] }
        let pool = try await placements.pool(for: record.placement)
        do {
            var options = SchemaMigrator.Options()
            options.createsSchema = false
            let migrations = MigrationSet(files: [])
            return try await SchemaMigrator(database: pool.database(schema: try SQLIdentifier(record.schema)), migrations: migrations,
                                            module: configuration.migrationModule, options: options).history(limit: limit)
        } catch {
            throw TenancyError(code: .databaseFailed, message: "reading the migrations of tenant \"\(slug)\" failed: \(error)", slug: slug, underlying: error)
        }
    }
}

/// Where the tenant registry is kept.
public struct RegistryLocation: Sendable {
    enum Kind: Sendable {
        case sqlite(path: String)
        case postgres(schema: String, database: DatabaseConfig?)
    }

    let kind: Kind

    private init(kind: Kind) { self.kind = kind }

    /// A SQLite file on this host: the embedded default, for one host.
    public static func sqlite(path: String) -> Self { Self(kind: .sqlite(path: path)) }

    /// Schema `schema` of the tenants' own database, over the same pool: every change commits
    /// in the same transaction as its DDL. For replicas on many hosts and operators anywhere.
    public static func postgres(schema: String = TenantRegistry.defaultSchema) -> Self { Self(kind: .postgres(schema: schema, database: nil)) }

    /// Schema `schema` of another PostgreSQL database, over a pool of its own.
    public static func postgres(_ database: DatabaseConfig, schema: String = TenantRegistry.defaultSchema) -> Self {
        Self(kind: .postgres(schema: schema, database: database))
    }

    /// The registry a setting names, as `TENANCY_REGISTRY` and `tenantctl --registry` take
    /// it: a `postgres://` or `postgresql://` URL names schema `schema` of that database (its
    /// password may come from `PGPASSWORD` or `~/.pgpass`), anything else a SQLite file.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument`` for another
    ///   kind of URL or a database URL without its scheme, without echoing it (it may hold a
    ///   password); `SchemaDBError` for a URL that cannot be used.
    public init(setting value: String, schema: String = TenantRegistry.defaultSchema, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") else {
            if value.contains("://") {
                throw TenancyError(code: .invalidArgument, message: "a registry must be a SQLite file or a postgres:// URL, and this is another kind of URL")
            }
            if let at = value.firstIndex(of: "@"), let colon = value.firstIndex(of: ":"), colon < at, !value[..<colon].contains("/") {
                throw TenancyError(code: .invalidArgument, message: "a registry looks like a database URL without its postgres:// scheme; add it, or give a file path")
            }
            self = .sqlite(path: value)
            return
        }
        self = .postgres(try DatabaseConfig(url: value).fillingPassword(from: environment), schema: schema)
    }

    /// The file of a SQLite registry.
    public var path: String? {
        if case .sqlite(let path) = kind { return path }
        return nil
    }

    /// The schema of a PostgreSQL registry.
    public var schema: String? {
        if case .postgres(let schema, _) = kind { return schema }
        return nil
    }

    /// The database of a PostgreSQL registry kept elsewhere than the tenants' database.
    public var database: DatabaseConfig? {
        if case .postgres(_, let database) = kind { return database }
        return nil
    }

    /// This location, with a PostgreSQL registry in `tenants`' own database turned into
    /// ``postgres(schema:)``, which shares the tenants' pool so that changes commit with their DDL.
    public func sharingPool(with tenants: DatabaseConfig) -> Self {
        guard case .postgres(let schema, let config?) = kind else { return self }
        let same = config.host == tenants.host && config.port == tenants.port && config.unixSocketPath == tenants.unixSocketPath
            && config.user == tenants.user && config.effectiveDatabase == tenants.effectiveDatabase
        return same ? .postgres(schema: schema) : self
    }
}

/// The check every operation waits for, done once: the registry is open, and it describes this
/// database, schema prefix and migration module (recorded the first time).
final class RegistryBinding: Sendable {
    private let registry: TenantRegistry
    private let pool: DatabasePool
    private let schemaPrefix: String
    private let migrationModule: String
    private let directoryTimeToLive: Duration
    let logger: Logger
    /// The registry's record once checked, and the announcer of a SQLite registry's changes.
    private let state = Mutex<(info: RegistryInfo, announcer: ChangeAnnouncer?)?>(nil)

    init(registry: TenantRegistry, pool: DatabasePool, schemaPrefix: String, migrationModule: String, directoryTimeToLive: Duration, logger: Logger) {
        self.registry = registry
        self.pool = pool
        self.schemaPrefix = schemaPrefix
        self.migrationModule = migrationModule
        self.directoryTimeToLive = directoryTimeToLive
        self.logger = logger
    }

    func ready() async throws -> RegistryInfo {
        if let info = state.withLock({ $0?.info }) { return info }
        _ = try await registry.prepared()
        let bound = try await registry.store.bind(database: try await Self.identity(of: pool), schemaPrefix: schemaPrefix, migrationModule: migrationModule)
        guard directoryTimeToLive < bound.slugReuseDelay else {
            throw TenancyError(
                code: .invalidArgument,
                message: "the directory's time to live (\(directoryTimeToLive)) must be shorter than the registry's slug reuse delay (\(bound.slugReuseDelay)); lower it")
        }
        let announcer = registry.store is SQLiteRegistryStore ? ChangeAnnouncer(pool: pool, channel: bound.notificationChannel, logger: logger) : nil
        state.withLock { $0 = (bound, announcer) }
        return bound
    }

    /// Announces a change to `slugs` when the registry cannot do it in its own transactions.
    func announce(_ slugs: [String]) async {
        guard !slugs.isEmpty, let announcer = state.withLock({ $0?.announcer }) else { return }
        await announcer.announce(Set(slugs).sorted().joined(separator: " "))
    }

    /// The server's system identifier and the database name of `pool`.
    static func identity(of pool: DatabasePool) async throws -> DatabaseIdentity {
        try await identity(of: pool.database(schema: nil))
    }

    /// The identity of the database `db` runs on.
    static func identity(of db: SchemaDatabase) async throws -> DatabaseIdentity {
        do {
            let row = try await db.fetchAll("SELECT system_identifier::text, current_database()::text FROM pg_control_system()").first
            if let (system, name) = try row?.decode((String, String).self) { return DatabaseIdentity(systemIdentifier: system, databaseName: name) }
        } catch let error as SchemaDBError where error.sqlState == "42501" {
            // pg_control_system() is not granted to this role: the database name must do.
        }
        let name = try await db.fetchValue("SELECT current_database()::text", as: String.self) ?? "?"
        return DatabaseIdentity(systemIdentifier: "unknown", databaseName: name)
    }
}
