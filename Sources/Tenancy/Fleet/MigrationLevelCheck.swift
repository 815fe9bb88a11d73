/// How a schema's recorded migration level compares with the migration set of this process.
public enum MigrationStanding: Sendable, Hashable {
    /// At the set's last file.
    case current
    /// Past the set's last file: a newer release migrated it. It is served, as a release's
    /// migrations must keep working with the release before it (add first, remove later).
    case ahead
    /// Before the set's last file, or with no recorded level: `pending` files of the set are
    /// not applied. The directory refuses it (``TenancyError/Code/migrationPending``).
    case behind(pending: Int)
}

/// The recorded migration levels of every active and suspended tenant against this process's
/// migration set, read from the registry alone (no tenant schema is opened).
///
/// A server checks it at start-up, after migrating or instead of it, so that a rolling deploy
/// never runs new code on old schemas: the directory refuses each tenant in ``behind`` until it
/// is migrated.
public struct MigrationLevelCheck: Sendable, Hashable {
    /// A tenant not at the current level.
    public struct Behind: Sendable, Hashable {
        /// The tenant.
        public var tenant: Tenant
        /// The files of the set its schema lacks.
        public var pendingFiles: Int
    }

    /// The level a fully migrated schema is at; `nil` when the set is empty.
    public var currentLevel: MigrationLevel?
    /// How many tenants are at the current level.
    public var current: Int
    /// Tenants migrated past this set by a newer release.
    public var ahead: [Tenant]
    /// Tenants behind the current level: the directory refuses them until they are migrated.
    public var behind: [Behind]

    /// Whether every tenant can be served.
    public var isReady: Bool { behind.isEmpty }
}
