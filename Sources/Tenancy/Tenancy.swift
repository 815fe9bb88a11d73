public import Foundation
public import Logging
public import PostgresNIO
public import SchemaDB
public import ServiceLifecycle

/// Schema-per-tenant PostgreSQL for a SaaS backend: the registry, the provisioner and the
/// directory of tenant handles, over ONE shared pool.
///
/// Build it from a ``SchemaDB/DatabaseConfig`` (it owns its pool and runs as a `Service`) or
/// from the application's `PostgresClient` (it borrows it):
///
/// ```swift
/// let tenancy = try Tenancy(client: app.postgresClient, configuration: .init(), logger: logger)
/// let acme = try await tenancy.database(for: "acme")
/// let open = try await acme.fetchValue("SELECT count(*) FROM {{tables.invoices}} WHERE paid = false", as: Int.self)
/// ```
public final class Tenancy: Service, Sendable {
    /// Tenancy settings. Every one has a default.
    public struct Configuration: Sendable {
        /// The registry file. Defaults to `.tenancy/registry.sqlite`.
        public var registryPath: String = TenantRegistry.defaultPath
        /// The tenant migration set. Defaults to `tenant-migrations`.
        public var migrationsDirectory: URL = URL(fileURLWithPath: "tenant-migrations")
        /// Provisioning settings.
        public var provisioner: Provisioner.Configuration = .init()
        /// Directory cache settings.
        public var directory: TenantDirectory.Configuration = .init()

        public init() {}
    }

    /// The shared pool.
    public let pool: DatabasePool
    /// The tenant registry.
    public let registry: TenantRegistry
    /// Creates and changes tenant schemas.
    public let provisioner: Provisioner
    /// Cached tenant handles.
    public let directory: TenantDirectory
    /// Migrates every tenant, with a ledger in the registry.
    public let fleet: FleetMigrator
    private let logger: Logger

    /// Creates a `Tenancy` that owns its pool. Run it (``run()``, or in a `ServiceGroup`)
    /// before use.
    public convenience init(databaseConfig: DatabaseConfig, configuration: Configuration = .init(), logger: Logger) throws {
        try self.init(pool: DatabasePool(configuration: databaseConfig, logger: logger), configuration: configuration, logger: logger)
    }

    /// Creates a `Tenancy` over the application's client, which it never runs or shuts down.
    /// - Important: `client` is owned by the caller, who must be running `client.run()`.
    public convenience init(client: PostgresClient, maximumConnections: Int? = nil, configuration: Configuration = .init(), logger: Logger) throws {
        try self.init(pool: DatabasePool(borrowing: client, maximumConnections: maximumConnections, logger: logger), configuration: configuration, logger: logger)
    }

    /// Creates a `Tenancy` over an existing pool.
    /// - Throws: ``TenancyError`` when the schema prefix is not a valid identifier start or the
    ///   registry cannot be opened, or `SchemaDBError` when the migration set cannot be read.
    public init(pool: DatabasePool, configuration: Configuration = .init(), logger: Logger) throws {
        let prefix = configuration.provisioner.schemaPrefix
        if prefix.isEmpty || prefix.utf8.count > 40 || SQLIdentifier.problem(with: prefix) != nil {
            throw TenancyError(code: .invalidArgument, message: "the schema prefix \"\(prefix.debugDescriptionEscaped)\" cannot be used; use 1 to 40 ASCII letters, digits and '_', starting with a letter or '_'")
        }
        self.pool = pool
        self.logger = logger
        self.registry = try TenantRegistry(path: configuration.registryPath)
        let migrations = try MigrationSet(directory: configuration.migrationsDirectory)
        self.provisioner = Provisioner(pool: pool, registry: registry, migrations: migrations, configuration: configuration.provisioner, logger: logger)
        self.directory = TenantDirectory(pool: pool, registry: registry, configuration: configuration.directory, logger: logger)
        self.fleet = FleetMigrator(provisioner: provisioner, logger: logger)
    }

    /// Runs an owned pool until shutdown; for a borrowed pool it only waits for shutdown.
    public func run() async {
        await pool.run()
    }

    /// The handle of tenant `slug`, from the directory's cache.
    public func database(for slug: String) async throws -> SchemaDatabase {
        try await directory.database(for: slug)
    }

    /// Onboards a tenant: claims a spare schema when one is ready, provisions one otherwise.
    @discardableResult
    public func create(_ slug: String, displayName: String? = nil) async throws -> Provisioner.Report {
        let slug = try TenantSlug(slug)
        defer { directory.invalidate(slug) }
        return try await provisioner.onboard(slug, displayName: displayName)
    }

    /// Suspends a tenant; its handles are refused at once in this process.
    @discardableResult
    public func suspend(_ slug: String) async throws -> Tenant {
        let slug = try TenantSlug(slug)
        defer { directory.invalidate(slug) }
        return try await provisioner.suspend(slug)
    }

    /// Resumes a suspended tenant.
    @discardableResult
    public func resume(_ slug: String) async throws -> Tenant {
        let slug = try TenantSlug(slug)
        defer { directory.invalidate(slug) }
        return try await provisioner.resume(slug)
    }

    /// Drops a tenant's schema and keeps its tombstone.
    ///
    /// > Warning: This deletes the tenant's data; `confirmingDataLoss` must be `true`.
    @discardableResult
    public func delete(_ slug: String, confirmingDataLoss: Bool) async throws -> Tenant {
        let slug = try TenantSlug(slug)
        defer { directory.invalidate(slug) }
        return try await provisioner.delete(slug, confirmingDataLoss: confirmingDataLoss)
    }

    /// Renames a tenant; its schema does not change.
    @discardableResult
    public func rename(_ slug: String, to newSlug: String) async throws -> Tenant {
        let (old, new) = (try TenantSlug(slug), try TenantSlug(newSlug))
        defer { directory.invalidate(old); directory.invalidate(new) }
        return try await provisioner.rename(old, to: new)
    }

    /// Brings every tenant and spare up to the current migration set through the fleet migrator,
    /// `concurrency` tenants at a time, waiting up to `fleetLockWait` for a run another process
    /// has started (another instance of the app starting at the same moment). Call it before the
    /// server starts (Hummingbird's `beforeServerStarts`).
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
        let slug = try TenantSlug(slug)
        guard let tenant = try await registry.tenant(slug: slug) else { throw TenancyError.notFound(slug.rawValue) }
        guard tenant.state == .active || tenant.state == .suspended else { return [] }
        do {
            return try await provisioner.makeMigrator(pool.database(schema: try SQLIdentifier(tenant.schema))).history(limit: limit)
        } catch {
            throw TenancyError(code: .databaseFailed, message: "reading the migrations of tenant \"\(slug)\" failed: \(error)", slug: slug.rawValue, underlying: error)
        }
    }
}
