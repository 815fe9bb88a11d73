public import Foundation
public import SchemaDB
public import Tenancy

/// The service's settings, from the environment: the variables `tenantctl` reads
/// (`DATABASE_URL`, `TENANCY_REGISTRY`, `TENANCY_REGISTRY_SCHEMA`, `TENANCY_SCHEMA_PREFIX`,
/// `TENANCY_MIGRATIONS`) and the service's own.
public struct ServiceSettings: Sendable {
    /// The tenants' database.
    public var database: DatabaseConfig
    /// Tenancy's settings. The registry must exist: a replica never creates an empty one.
    public var tenancy: Tenancy.Configuration
    /// `HOST`, default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// `PORT`, default 8080.
    public var port: Int = 8080
    /// `TENANT_FROM`: `header` (the default, `TENANT_HEADER`, default `X-Tenant`), `subdomain`
    /// (of `TENANT_DOMAIN`) or `path` (`/t/{tenant}/…`).
    public var tenantSource: TenantSource = .header("X-Tenant")
    /// `TENANCY_STARTUP_MIGRATES` (default `true`) and `TENANCY_FLEET_LOCK_WAIT` in seconds
    /// (default 30). `TENANCY_MIGRATES_ON_REQUEST` (default `false`) sets the directory's
    /// `migratesTenantsBehindMigrationSet` in ``tenancy``.
    public var startup: Tenancy.StartupOptions = .init()
    /// `DATABASE_MAX_CONNECTIONS`, the pool's size (default 20).
    public var maximumConnections: Int = 20

    public init(database: DatabaseConfig, tenancy: Tenancy.Configuration) {
        self.database = database
        self.tenancy = tenancy
        self.tenancy.createsRegistry = false
    }

    /// Reads the settings from `environment`.
    /// - Throws: ``SettingsError`` naming the variable that cannot be used.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Self {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = value(name) else { return nil }
            guard let number = Int(text), range.contains(number) else {
                throw SettingsError("\(name)=\(text) is not a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        let database = try DatabaseConfig.fromEnvironment(environment)
        var settings = Self(database: database, tenancy: try Tenancy.Configuration.fromEnvironment(environment, database: database))
        if let host = value("HOST") { settings.host = host }
        if let port = try integer("PORT", in: 0...65535) { settings.port = port }
        if let size = try integer("DATABASE_MAX_CONNECTIONS", in: 2...1000) { settings.maximumConnections = size }
        switch value("TENANT_FROM") ?? "header" {
        case "header": settings.tenantSource = .header(value("TENANT_HEADER") ?? "X-Tenant")
        case "subdomain":
            guard let domain = value("TENANT_DOMAIN") else { throw SettingsError("TENANT_FROM=subdomain needs TENANT_DOMAIN, such as example.com") }
            settings.tenantSource = .subdomain(of: domain)
        case "path": settings.tenantSource = .pathParameter("tenant")
        case let other: throw SettingsError("TENANT_FROM=\(other) is not header, subdomain or path")
        }
        func boolean(_ name: String, default fallback: Bool) throws -> Bool {
            switch value(name) {
            case nil: return fallback
            case "true", "1", "yes": return true
            case "false", "0", "no": return false
            case let other?: throw SettingsError("\(name)=\(other) is not true or false")
            }
        }
        settings.startup.migrates = try boolean("TENANCY_STARTUP_MIGRATES", default: true)
        settings.tenancy.directory.migratesTenantsBehindMigrationSet = try boolean("TENANCY_MIGRATES_ON_REQUEST", default: false)
        if let seconds = try integer("TENANCY_FLEET_LOCK_WAIT", in: 0...3600) { settings.startup.fleetLockWait = .seconds(seconds) }
        return settings
    }
}

/// A setting that cannot be used; its description names the variable and what to do.
public struct SettingsError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
