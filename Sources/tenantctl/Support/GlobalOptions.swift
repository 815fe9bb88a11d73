import ArgumentParser
import Foundation
import Logging
import SchemaDB
import Tenancy

/// The options every command takes, each resolved as: the flag, then its environment variable,
/// then the default.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: ArgumentHelp(
        "The PostgreSQL URL. Default: $DATABASE_URL, then a PostgreSQL registry's URL, then the PG* variables. Leave the password out: it is taken from $PGPASSWORD or ~/.pgpass ($PGPASSFILE).",
        valueName: "url"))
    var databaseURL: String?

    @Option(help: ArgumentHelp(
        "The registry: a SQLite file, or a postgres:// URL for a registry in PostgreSQL. Default: $TENANCY_REGISTRY, then .tenancy/registry.sqlite.",
        valueName: "path-or-url"))
    var registry: String?

    @Option(name: .customLong("registry-schema"), help: ArgumentHelp("The schema of a PostgreSQL registry. Default: $TENANCY_REGISTRY_SCHEMA, then tenancy.", valueName: "schema"))
    var registrySchema: String?

    @Option(help: ArgumentHelp("The tenant migrations directory. Default: $TENANCY_MIGRATIONS, then tenant-migrations.", valueName: "dir"))
    var migrations: String?

    @Option(name: .customLong("schema-prefix"), help: ArgumentHelp("The prefix of tenant schema names. Default: $TENANCY_SCHEMA_PREFIX, then tenant_.", valueName: "prefix"))
    var schemaPrefix: String?

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical. Default: $TENANCY_LOG_LEVEL, then warning.", valueName: "level"))
    var logLevel: String?

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Where the registry is, as given.
    enum RegistryChoice {
        case file(String)
        case postgres(DatabaseConfig, schema: String)
    }

    /// The registry from `--registry` / `TENANCY_REGISTRY`.
    func registryChoice() throws -> RegistryChoice {
        let value = nonEmpty(registry) ?? nonEmpty(environment["TENANCY_REGISTRY"]) ?? TenantRegistry.defaultPath
        let schema = nonEmpty(registrySchema) ?? nonEmpty(environment["TENANCY_REGISTRY_SCHEMA"]) ?? TenantRegistry.defaultSchema
        return try Self.registryChoice(value, schema: schema, environment: environment)
    }

    /// A registry given as `value`: a `postgres://` or `postgresql://` URL names a PostgreSQL
    /// registry, anything else a SQLite file, except what looks like another URL, which is
    /// refused without being echoed (it may hold a password).
    static func registryChoice(_ value: String, schema: String, environment: [String: String]) throws -> RegistryChoice {
        let location = try RegistryLocation(setting: value, schema: schema, environment: environment)
        guard var config = location.database else { return .file(location.path ?? value) }
        config.retry = .none
        if config.applicationName == nil { config.applicationName = "tenantctl" }
        return .postgres(config, schema: schema)
    }

    /// How messages and `init` name the registry: a path, or a schema and a masked URL.
    func registryDescription() throws -> String {
        switch try registryChoice() {
        case .file(let path): path
        case .postgres(let config, let schema): "schema \(schema) of \(config)"
        }
    }

    var migrationsDirectory: String { nonEmpty(migrations) ?? nonEmpty(environment["TENANCY_MIGRATIONS"]) ?? "tenant-migrations" }

    var resolvedSchemaPrefix: String { nonEmpty(schemaPrefix) ?? nonEmpty(environment["TENANCY_SCHEMA_PREFIX"]) ?? Tenancy.Configuration().schemaPrefix }

    /// The database settings, failing fast: no retries of the first connection.
    func databaseConfig(connections: Int = 4) throws -> DatabaseConfig {
        var config: DatabaseConfig
        if let url = nonEmpty(databaseURL) ?? nonEmpty(environment["DATABASE_URL"]) {
            config = try DatabaseConfig(url: url).fillingPassword(from: environment)
        } else if case .postgres(let registryConfig, _) = try registryChoice() {
            config = registryConfig
        } else {
            config = try DatabaseConfig.fromEnvironment(environment)
        }
        config.retry = .none
        config.maximumConnections = max(config.maximumConnections, connections + 1)
        if config.applicationName == nil { config.applicationName = "tenantctl" }
        return config
    }

    /// Where `Tenancy` finds the registry, given the tenants' database: a PostgreSQL registry in
    /// the same database shares its pool, so that changes commit with their DDL.
    func registryLocation(database: DatabaseConfig) throws -> RegistryLocation {
        switch try registryChoice() {
        case .file(let path): .sqlite(path: path)
        case .postgres(let config, let schema): RegistryLocation.postgres(config, schema: schema).sharingPool(with: database)
        }
    }

    func resolvedLogLevel() throws -> Logger.Level {
        let name = nonEmpty(logLevel) ?? nonEmpty(environment["TENANCY_LOG_LEVEL"]) ?? "warning"
        guard let level = Logger.Level(rawValue: name.lowercased()) else {
            throw UsageError("unknown log level \"\(name)\"; use one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return level
    }

    private func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}
