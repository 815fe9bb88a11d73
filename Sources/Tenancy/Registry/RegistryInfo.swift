/// What a registry records about itself and about the fleet it describes.
public struct RegistryInfo: Sendable, Hashable {
    /// The version of the registry's tables.
    public var formatVersion: Int
    /// A random id given when the registry was created. Its changes are announced on the
    /// PostgreSQL channel ``notificationChannel``.
    public var id: String
    /// The database the tenant schemas live in, recorded the first time the registry is used
    /// with a database. A registry refuses to work with another database.
    public var database: DatabaseIdentity?
    /// The prefix of the tenant schema names, recorded with ``database``. A registry refuses
    /// to work with another prefix.
    public var schemaPrefix: String?
    /// The migration module the tenants' schemas are migrated with, recorded with
    /// ``database``. A registry refuses to work with another module: its levels and fleet runs
    /// describe one migration set.
    public var migrationModule: String?
    /// How long a slug given up by a rename stays unavailable to other tenants. Every
    /// directory's time to live must be shorter, so that no cache still routes the slug to its
    /// old schema when another tenant takes it.
    public var slugReuseDelay: Duration

    /// The `LISTEN`/`NOTIFY` channel of the registry's change announcements.
    public var notificationChannel: String { "tenancy_" + id }
}

/// Which PostgreSQL database a registry describes: the server's system identifier (from
/// `pg_control_system()`) and the database name.
public struct DatabaseIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The cluster's system identifier, unique per `initdb`.
    public var systemIdentifier: String
    /// The database name.
    public var databaseName: String

    public init(systemIdentifier: String, databaseName: String) {
        self.systemIdentifier = systemIdentifier
        self.databaseName = databaseName
    }

    public var description: String { "database \"\(databaseName)\" of server \(systemIdentifier)" }
}
