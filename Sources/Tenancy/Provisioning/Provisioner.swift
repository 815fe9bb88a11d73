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
    /// migration lock first.
    func create(_ schema: SQLIdentifier, in transaction: SchemaDatabase) async throws -> MigrationReport {
        let db = transaction.withSchema(schema)
        try await db.execute("CREATE SCHEMA {{schema}}")
        return try await migrations.migrator(for: db).apply(inTransaction: db)
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

    /// Drops `schema` and everything in it inside `transaction`, waiting at most `lockTimeout`
    /// for its tables' locks, so that a busy tenant makes the drop fail instead of queueing
    /// every later query behind it.
    static func drop(_ schema: SQLIdentifier, in transaction: SchemaDatabase, lockTimeout: Duration) async throws {
        _ = try await transaction.fetchAll("SELECT set_config('lock_timeout', $1, true)", String(max(1, lockTimeout.wholeMilliseconds)))
        try await transaction.withSchema(schema).execute("DROP SCHEMA IF EXISTS {{schema}} CASCADE")
    }
}
