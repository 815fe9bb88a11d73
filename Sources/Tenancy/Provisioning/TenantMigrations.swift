import SchemaDB

/// What there is to know about the tenant migration set: the files, their module, the level a
/// fully migrated schema is at, how to build a migrator, and the advisory-lock keys. The
/// provisioner, onboarding, reconcile and the fleet all use this one value.
struct TenantMigrations: Sendable {
    let set: MigrationSet
    let module: String
    /// The longest wait for a schema's migration lock and for each table lock.
    let lockTimeout: Duration
    /// The level a fully migrated schema is at; `nil` for an empty set.
    let currentLevel: MigrationLevel?
    /// Whether some file is marked `-- pgdbm:no-transaction`: a new schema is then provisioned
    /// in stages, as it cannot commit in one transaction with its files.
    let provisionsInStages: Bool

    init(set: MigrationSet, module: String, lockTimeout: Duration) {
        self.set = set
        self.module = module
        self.lockTimeout = lockTimeout
        self.currentLevel = set.latest.map { MigrationLevel(lastFile: $0.filename, setChecksum: set.checksum) }
        self.provisionsInStages = set.files.contains { !$0.runsInTransaction }
    }

    /// Where a schema whose registry level is `level` stands against this set.
    func standing(of level: MigrationLevel?) -> MigrationStanding {
        guard let latest = set.latest else { return .current }
        guard let level else { return .behind(pending: set.files.count) }
        if let index = set.files.firstIndex(where: { $0.filename == level.lastFile }) {
            let pending = set.files.count - 1 - index
            return pending == 0 ? .current : .behind(pending: pending)
        }
        // A file this set does not have: a newer release's, or one removed from the set.
        guard let version = MigrationFile.version(of: level.lastFile) else { return .behind(pending: set.files.count) }
        let recorded = (version: version, filename: level.lastFile)
        guard MigrationFile.precedes(recorded, (latest.version, latest.filename)) else { return .ahead }
        return .behind(pending: set.files.count { MigrationFile.precedes(recorded, ($0.version, $0.filename)) })
    }

    /// A migrator of the set for `db`'s schema, which must exist.
    func migrator(for db: SchemaDatabase, lockTimeout: Duration? = nil) throws -> SchemaMigrator {
        var options = SchemaMigrator.Options()
        options.lockTimeout = lockTimeout ?? self.lockTimeout
        options.createsSchema = false
        return try SchemaMigrator(database: db, migrations: set, module: module, options: options)
    }

    /// The advisory lock a provisioning holds on a schema from the first registry write to
    /// the last, so that reconcile leaves the attempt alone.
    static func provisioningLockKey(_ schema: String) -> Int64 {
        AdvisoryLockKey.make("tenancy.provision", schema)
    }

    /// The fleet lock of the tenants with this schema prefix.
    func fleetLockKey(schemaPrefix: String) -> Int64 {
        AdvisoryLockKey.make("tenancy.fleet", schemaPrefix, module)
    }
}
