import Foundation
public import Logging
import Metrics
public import SchemaDB

/// Creates, migrates, suspends, resumes, renames and deletes tenant schemas, keeping the
/// registry and PostgreSQL consistent.
///
/// Provisioning runs in ONE PostgreSQL transaction: an advisory lock on the schema,
/// `CREATE SCHEMA`, the whole tenant migration set and its tracking rows. A failure anywhere
/// leaves no schema behind and marks the tenant `failed`; a crash after the commit is healed by
/// the next provisioning or by ``reconcile(fix:)``, which adopt the complete schema.
public struct Provisioner: Sendable {
    /// Provisioner settings. Every one has a default.
    public struct Configuration: Sendable {
        /// The migration module of the tenant migration set. Defaults to `tenant`.
        public var module: String = "tenant"
        /// The prefix of generated schema names. Defaults to `tenant_`.
        public var schemaPrefix: String = "tenant_"
        /// The longest wait for another runner migrating the same schema. Defaults to 30 s.
        public var migrationLockTimeout: Duration = .seconds(30)

        public init() {}
    }

    /// What ``provision(_:displayName:)`` or ``onboard(_:displayName:)`` did.
    public struct Report: Sendable, Hashable {
        /// How the tenant came to be active.
        public enum Outcome: String, Sendable, Hashable, Codable {
            /// A new schema was created and migrated.
            case provisioned
            /// A spare schema was claimed: no DDL.
            case claimedSpare = "claimed_spare"
            /// The schema of an interrupted attempt was complete and was adopted.
            case adopted
            /// The tenant was already active; nothing changed.
            case alreadyActive = "already_active"
        }

        public var tenant: Tenant
        public var outcome: Outcome
        /// Migration files applied by this call.
        public var appliedFiles: [String]
    }

    public let pool: DatabasePool
    public let registry: TenantRegistry
    public let migrations: MigrationSet
    public let configuration: Configuration
    let logger: Logger
    private let provisionedCounter = Counter(label: "tenancy_tenants_provisioned")
    private let failedCounter = Counter(label: "tenancy_provisioning_failures")
    private let claimedCounter = Counter(label: "tenancy_spares_claimed")

    /// - Important: `pool` must be running (owned) or borrowed from a running client.
    public init(pool: DatabasePool, registry: TenantRegistry, migrations: MigrationSet, configuration: Configuration = .init(), logger: Logger) {
        self.pool = pool
        self.registry = registry
        self.migrations = migrations
        self.currentLevel = migrations.latest.map { MigrationLevel(lastFile: $0.filename, setChecksum: migrations.checksum) }
        self.configuration = configuration
        self.logger = logger
    }

    /// The level a fully migrated schema is at, or `nil` for an empty migration set.
    public let currentLevel: MigrationLevel?

    // MARK: - Onboarding

    /// Onboards a tenant: claims a spare schema when one is available (a registry change only,
    /// migrating the spare first if it is behind), and provisions a new schema otherwise.
    public func onboard(_ slug: TenantSlug, displayName: String? = nil) async throws -> Report {
        if let existing = try await registry.tenant(slug: slug) {
            return try await provision(existing.slug, displayName: displayName)
        }
        for _ in 0..<3 {
            guard let spare = try await registry.oldestSpare() else { break }
            if spare.migrationLevel != currentLevel {
                let report = try await migrate(schema: spare.schema, slug: nil)
                if let level = currentLevel { try await registry.setLevel(id: spare.id, level: level, event: "migrated") }
                logger.debug("migrated a spare before claiming it", metadata: [TenancyLoggingKeys.tenantSchema: "\(spare.schema)", LoggingKeys.migrationCount: "\(report.applied.count)"])
            }
            if let tenant = try await registry.claimSpare(id: spare.id, slug: slug, displayName: displayName) {
                claimedCounter.increment()
                logger.info("tenant onboarded from a spare", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(tenant.schema)"])
                return Report(tenant: tenant, outcome: .claimedSpare, appliedFiles: [])
            }
        }
        return try await provision(slug, displayName: displayName)
    }

    /// Provisions a tenant: a new schema with the whole migration set, in one transaction.
    ///
    /// An active tenant is left alone (``Report/Outcome/alreadyActive``). A `failed` tenant is
    /// provisioned again from scratch. A tenant stuck in `provisioning` whose schema is complete
    /// is adopted.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/provisioningFailed`` (the tenant
    ///   is now `failed` and nothing was left in the database),
    ///   ``TenancyError/Code/provisioningInProgress`` (another process holds it), or
    ///   ``TenancyError/Code/tenantSuspended`` / ``TenancyError/Code/tenantDeleted``.
    public func provision(_ slug: TenantSlug, displayName: String? = nil) async throws -> Report {
        let (row, wasStuck) = try await registry.beginProvisioning(slug: slug, displayName: displayName, makeSchema: makeSchemaName)
        switch row.state {
        case .active:
            return Report(tenant: row, outcome: .alreadyActive, appliedFiles: [])
        case .suspended:
            throw TenancyError(code: .tenantSuspended, message: "tenant \"\(slug)\" exists and is suspended; resume it instead", slug: slug.rawValue)
        case .deleted:
            throw TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted; choose another slug", slug: slug.rawValue)
        default:
            break
        }
        let schema = try SQLIdentifier(row.schema)
        do {
            if wasStuck, try await pool.database(schema: schema).schemaExists() {
                let report = try await migrate(schema: row.schema, slug: slug)
                let tenant = try await activate(row.id, slug: slug, event: "adopted")
                logger.info("adopted the schema of an interrupted provisioning", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(row.schema)"])
                return Report(tenant: tenant, outcome: .adopted, appliedFiles: report.applied.map(\.filename))
            }
            let report = try await createSchema(schema, slug: slug)
            let tenant = try await activate(row.id, slug: slug, event: "provisioned")
            provisionedCounter.increment()
            logger.info("tenant provisioned", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(row.schema)"])
            return Report(tenant: tenant, outcome: .provisioned, appliedFiles: report.applied.map(\.filename))
        } catch let error as TenancyError where error.code == .provisioningInProgress {
            throw error
        } catch {
            failedCounter.increment()
            let failure = TenancyError(
                code: .provisioningFailed,
                message: "provisioning tenant \"\(slug)\" failed and was rolled back: \(error); fix the cause and provision again",
                slug: slug.rawValue, underlying: error)
            _ = try? await registry.transition(id: row.id, to: .failed, event: "failed", lastError: "\(error)")
            logger.debug("provisioning failed", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", "error": "\(error)"])
            throw failure
        }
    }

    /// Pre-provisions `count` spare schemas, `concurrency` at a time.
    /// - Returns: The spares created.
    public func fillSpares(count: Int, concurrency: Int = 4) async throws -> [SpareSchema] {
        guard count > 0 else { return [] }
        let width = min(concurrency, pool.connectionLimit ?? concurrency)
        _ = try await forEachConcurrently(0..<count, width: width) { _ in try await self.provisionSpare() }
        return try await registry.spares()
    }

    private func provisionSpare() async throws {
        let name = makeSchemaName()
        let id = try await registry.beginSpare(schema: name)
        do {
            _ = try await createSchema(try SQLIdentifier(name), slug: nil)
            try await registry.transition(id: id, to: .spare, event: "spare_created", level: currentLevel)
        } catch {
            _ = try? await registry.removeRow(id: id)
            throw TenancyError(code: .provisioningFailed, message: "provisioning a spare schema failed and was rolled back: \(error)", underlying: error)
        }
    }

    // MARK: - Lifecycle

    /// Suspends an active tenant: its handles are refused until it is resumed.
    @discardableResult
    public func suspend(_ slug: TenantSlug) async throws -> Tenant {
        try await move(slug, to: .suspended, event: "suspended")
    }

    /// Resumes a suspended tenant.
    @discardableResult
    public func resume(_ slug: TenantSlug) async throws -> Tenant {
        try await move(slug, to: .active, event: "resumed")
    }

    /// Drops the tenant's schema with all its data and keeps the registry row as a tombstone.
    ///
    /// > Warning: This deletes the tenant's data.
    /// - Parameter confirmingDataLoss: Must be `true`; otherwise nothing happens and
    ///   ``TenancyError/Code/confirmationRequired`` is thrown.
    @discardableResult
    public func delete(_ slug: TenantSlug, confirmingDataLoss: Bool) async throws -> Tenant {
        guard confirmingDataLoss else {
            throw TenancyError(code: .confirmationRequired, message: "deleting tenant \"\(slug)\" drops its schema and data; confirm to go ahead", slug: slug.rawValue)
        }
        guard let tenant = try await registry.tenant(slug: slug) else { throw TenancyError.notFound(slug.rawValue) }
        guard tenant.state.canMove(to: .deleted) else {
            throw TenancyError(code: tenant.state == .deleted ? .tenantDeleted : .illegalTransition, message: "tenant \"\(slug)\" is \(tenant.state.rawValue) and cannot be deleted", slug: slug.rawValue)
        }
        do {
            try await pool.database(schema: try SQLIdentifier(tenant.schema)).dropSchema(cascade: true)
        } catch {
            throw TenancyError(code: .databaseFailed, message: "dropping the schema of tenant \"\(slug)\" failed: \(error)", slug: slug.rawValue, underlying: error)
        }
        return try await move(slug, to: .deleted, event: "deleted")
    }

    /// Renames a tenant in the registry; the schema does not change.
    @discardableResult
    public func rename(_ slug: TenantSlug, to newSlug: TenantSlug) async throws -> Tenant {
        try await registry.rename(slug, to: newSlug)
    }

    private func move(_ slug: TenantSlug, to state: TenantState, event: String) async throws -> Tenant {
        guard let tenant = try await registry.tenant(slug: slug) else { throw TenancyError.notFound(slug.rawValue) }
        try await registry.transition(id: tenant.id, to: state, event: event)
        return try await registry.tenant(slug: slug)!
    }

    // MARK: - Database work

    /// Creates `schema` and applies the whole set in one transaction.
    func createSchema(_ schema: SQLIdentifier, slug: TenantSlug?) async throws -> MigrationReport {
        let db = pool.database(schema: schema)
        let migrator = try makeMigrator(db)
        return try await db.withTransaction { transaction in
            let locked = try await transaction.fetchValue("SELECT pg_try_advisory_xact_lock($1)", Self.schemaLockKey(schema.name), as: Bool.self)
            guard locked == true else {
                throw TenancyError(code: .provisioningInProgress, message: "tenant \(slug.map { "\"\($0)\"" } ?? "schema") is being provisioned by another process; wait for it to finish", slug: slug?.rawValue)
            }
            try await transaction.execute("CREATE SCHEMA {{schema}}")
            return try await migrator.apply(inTransaction: transaction)
        }
    }

    /// Brings an existing schema up to the current set.
    func migrate(schema: String, slug: TenantSlug?) async throws -> MigrationReport {
        do {
            return try await makeMigrator(pool.database(schema: try SQLIdentifier(schema))).apply()
        } catch {
            throw TenancyError(code: .migrationFailed, message: "migrating \(slug.map { "tenant \"\($0)\"" } ?? "schema \(schema)") failed: \(error)", slug: slug?.rawValue, underlying: error)
        }
    }

    func makeMigrator(_ db: SchemaDatabase, lockTimeout: Duration? = nil) throws -> SchemaMigrator {
        var options = SchemaMigrator.Options()
        options.lockTimeout = lockTimeout ?? configuration.migrationLockTimeout
        options.createsSchema = false
        return try SchemaMigrator(database: db, migrations: migrations, module: configuration.module, options: options)
    }

    private func activate(_ id: Int64, slug: TenantSlug, event: String) async throws -> Tenant {
        do {
            try await registry.transition(id: id, to: .active, event: event, level: currentLevel)
        } catch let error as TenancyError where error.code == .illegalTransition {
            // Another process adopted the committed schema first: the tenant is active all the same.
            guard let tenant = try await registry.tenant(slug: slug), tenant.state == .active else { throw error }
            return tenant
        }
        guard let tenant = try await registry.tenant(slug: slug) else { throw TenancyError.notFound(slug.rawValue) }
        return tenant
    }

    private func makeSchemaName() -> String {
        configuration.schemaPrefix + String(UInt64.random(in: 0 ... .max) | (1 << 63), radix: 16)
    }

    /// The advisory lock provisioning holds on a schema.
    static func schemaLockKey(_ schema: String) -> Int64 {
        AdvisoryLockKey.make("tenancy.provision", schema)
    }
}
