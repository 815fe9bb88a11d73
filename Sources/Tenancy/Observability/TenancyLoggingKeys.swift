public import Logging

/// The metadata keys `Tenancy` logs with, next to `SchemaDB.LoggingKeys`.
public enum TenancyLoggingKeys {
    /// The tenant's slug.
    public static let tenantSlug: Logger.Metadata.Key = "tenant.slug"
    /// The tenant's schema.
    public static let tenantSchema: Logger.Metadata.Key = "tenant.schema"
}
