import ArgumentParser
import Foundation
import Logging
import SchemaDB
import Tenancy

/// The options every command takes, each resolved as: the flag, then its environment variable,
/// then the default.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: ArgumentHelp("The PostgreSQL URL. Default: $DATABASE_URL, then the PG* variables.", valueName: "url"))
    var databaseURL: String?

    @Option(help: ArgumentHelp("The registry file. Default: $TENANCY_REGISTRY, then .tenancy/registry.sqlite.", valueName: "path"))
    var registry: String?

    @Option(help: ArgumentHelp("The tenant migrations directory. Default: $TENANCY_MIGRATIONS, then tenant-migrations.", valueName: "dir"))
    var migrations: String?

    @Option(name: .customLong("schema-prefix"), help: ArgumentHelp("The prefix of tenant schema names. Default: $TENANCY_SCHEMA_PREFIX, then tenant_.", valueName: "prefix"))
    var schemaPrefix: String?

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical. Default: $TENANCY_LOG_LEVEL, then warning.", valueName: "level"))
    var logLevel: String?

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    var registryPath: String { nonEmpty(registry) ?? nonEmpty(environment["TENANCY_REGISTRY"]) ?? TenantRegistry.defaultPath }

    var migrationsDirectory: String { nonEmpty(migrations) ?? nonEmpty(environment["TENANCY_MIGRATIONS"]) ?? "tenant-migrations" }

    var resolvedSchemaPrefix: String { nonEmpty(schemaPrefix) ?? nonEmpty(environment["TENANCY_SCHEMA_PREFIX"]) ?? Provisioner.Configuration().schemaPrefix }

    /// The database settings, failing fast: no retries of the first connection.
    func databaseConfig(connections: Int = 4) throws -> DatabaseConfig {
        var config = if let url = nonEmpty(databaseURL) { try DatabaseConfig(url: url) } else { try DatabaseConfig.fromEnvironment(environment) }
        config.retry = .none
        config.maximumConnections = max(config.maximumConnections, connections + 1)
        if config.applicationName == nil { config.applicationName = "tenantctl" }
        return config
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
