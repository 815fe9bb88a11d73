public import Logging

/// The metadata keys `Tenancy` logs with, next to `SchemaDB.LoggingKeys`.
public enum TenancyLoggingKeys {
    /// The tenant's slug.
    public static let tenantSlug: Logger.Metadata.Key = "tenant.slug"
    /// The tenant's registry id.
    public static let tenantID: Logger.Metadata.Key = "tenant.id"
    /// The tenant's schema.
    public static let tenantSchema: Logger.Metadata.Key = "tenant.schema"
    /// The `LISTEN`/`NOTIFY` channel of the registry's change announcements.
    public static let notificationChannel: Logger.Metadata.Key = "tenancy.channel"
    /// The tenant's placement, when it is not the default one.
    public static let placement: Logger.Metadata.Key = "tenant.placement"
    /// A fleet run's id.
    public static let fleetRun: Logger.Metadata.Key = "fleet.run"
}
