public import Logging

/// The metadata keys `SchemaDB` logs with.
public enum LoggingKeys {
    /// The schema a query or migration ran in.
    public static let schema: Logger.Metadata.Key = "db.schema"
    /// A statement's SQL, without bind values, abbreviated.
    public static let statement: Logger.Metadata.Key = "db.statement"
    /// How long a query took, in milliseconds.
    public static let durationMilliseconds: Logger.Metadata.Key = "db.duration_ms"
    /// The server's SQLSTATE of a failed statement.
    public static let sqlState: Logger.Metadata.Key = "db.sqlstate"
    /// The migration module.
    public static let migrationModule: Logger.Metadata.Key = "migration.module"
    /// A migration file name.
    public static let migrationFile: Logger.Metadata.Key = "migration.file"
    /// The number of migration files applied.
    public static let migrationCount: Logger.Metadata.Key = "migration.count"
    /// The server endpoint: `host:port` or a socket path.
    public static let endpoint: Logger.Metadata.Key = "db.endpoint"
    /// The connection attempt, counting from 1.
    public static let attempt: Logger.Metadata.Key = "db.attempt"
    /// An error's one-line description.
    public static let error: Logger.Metadata.Key = "error"
}
