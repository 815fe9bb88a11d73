import SchemaDB

/// The database side of a tenant's lifecycle: creating a schema with the whole migration set,
/// bringing an existing one up to date, inspecting one, and dropping one. It never touches the
/// registry; ``TenantLifecycle`` pairs its work with the registry's writes.
struct Provisioner: Sendable {
    let pool: DatabasePool
    let migrations: TenantMigrations

    /// What a schema holds, as far as the tenant migration set is concerned.
    enum SchemaCondition: Sendable {
        /// No such schema.
        case absent
        /// The schema exists; its migrations compared with the set.
        case present(MigrationStatus)

        /// Whether the schema has every file of the set applied, unchanged, and nothing else:
        /// a provisioning that committed, or a schema brought up to date.
        var isComplete: Bool {
            if case .present(let status) = self { return status.isUpToDate }
            return false
        }
    }

    /// Creates `schema` and applies the whole set inside `transaction`, taking the schema's
    /// migration lock first. Only for a set whose files all run in a transaction.
    func create(_ schema: SQLIdentifier, in transaction: SchemaDatabase) async throws -> MigrationReport {
        try await createEmpty(schema, in: transaction)
        let db = transaction.withSchema(schema)
        return try await migrations.migrator(for: db).apply(inTransaction: db)
    }

    /// Creates `schema`, empty, inside `transaction`: the first stage of a provisioning in
    /// stages, which applies the set afterwards with ``migrate(_:on:)``.
    func createEmpty(_ schema: SQLIdentifier, in transaction: SchemaDatabase) async throws {
        try await transaction.withSchema(schema).execute("CREATE SCHEMA {{schema}}")
    }

    /// Applies the files `schema` is missing through `session`, each transactional run of
    /// files in a transaction and each file marked `-- pgdbm:no-transaction` alone.
    func migrate(_ schema: SQLIdentifier, on session: SchemaDatabase) async throws -> MigrationReport {
        try await migrations.migrator(for: session.withSchema(schema)).apply()
    }

    /// Applies the files `schema` is missing, inside `transaction`.
    func complete(_ schema: SQLIdentifier, in transaction: SchemaDatabase) async throws -> MigrationReport {
        let db = transaction.withSchema(schema)
        return try await migrations.migrator(for: db).apply(inTransaction: db)
    }

    /// Brings `schema` up to the set, in transactions of its own.
    func migrate(_ schema: SQLIdentifier, lockTimeout: Duration? = nil) async throws -> MigrationReport {
        try await migrations.migrator(for: pool.database(schema: schema), lockTimeout: lockTimeout).apply()
    }

    /// Whether `schema` exists and how its migrations compare with the set, read through `db`
    /// (a pool handle, or a transaction that should see its own work).
    func condition(of schema: SQLIdentifier, on db: SchemaDatabase? = nil) async throws -> SchemaCondition {
        let handle = (db ?? pool.database(schema: nil)).withSchema(schema)
        guard try await handle.schemaExists() else { return .absent }
        return .present(try await migrations.migrator(for: handle).status())
    }

    /// Takes the advisory lock a provisioning of `schema` holds until `transaction` ends.
    /// - Returns: `false` when another provisioning (or reconcile) holds it.
    static func lock(_ schema: String, in transaction: SchemaDatabase) async throws -> Bool {
        try await transaction.fetchValue("SELECT pg_try_advisory_xact_lock($1)", TenantMigrations.provisioningLockKey(schema), as: Bool.self) == true
    }

    /// Takes the same lock as ``lock(_:in:)`` for `session`'s whole life, for a provisioning
    /// in stages that commits more than once. Release it with ``unlock(_:on:)``.
    /// - Returns: `false` when another provisioning (or reconcile) holds it.
    static func lock(_ schema: String, on session: SchemaDatabase) async throws -> Bool {
        try await session.fetchValue("SELECT pg_try_advisory_lock($1)", TenantMigrations.provisioningLockKey(schema), as: Bool.self) == true
    }

    /// Waits (at most `timeout`) until no provisioning of `schema` holds its lock: after a lost
    /// `COMMIT` answer, the transaction that sent it has ended, committed or not, once this
    /// returns, so that what it left can be read.
    func waitForProvisioning(of schema: String, timeout: Duration = .seconds(10)) async throws {
        try await pool.database(schema: nil).withTransaction { tx in
            _ = try await tx.fetchAll(
                "SELECT set_config('lock_timeout', $1, true), pg_advisory_xact_lock($2)",
                "\(timeout.wholeMilliseconds)ms", TenantMigrations.provisioningLockKey(schema))
        }
    }

    /// Releases the lock ``lock(_:on:)`` took.
    static func unlock(_ schema: String, on session: SchemaDatabase) async throws {
        _ = try await session.fetchAll("SELECT pg_advisory_unlock($1)", TenantMigrations.provisioningLockKey(schema))
    }

    /// Drops `schema` and everything in it inside `transaction`, waiting at most `lockTimeout`
    /// for its tables' locks, so that a busy tenant makes the drop fail instead of queueing
    /// every later query behind it.
    static func drop(_ schema: SQLIdentifier, in transaction: SchemaDatabase, lockTimeout: Duration) async throws {
        _ = try await transaction.fetchAll("SELECT set_config('lock_timeout', $1, true)", String(max(1, lockTimeout.wholeMilliseconds)))
        try await transaction.withSchema(schema).execute("DROP SCHEMA IF EXISTS {{schema}} CASCADE")
    }
}
