import Foundation
import Logging
import SchemaDB
import Tenancy

/// What a command works with: its settings, logger and output, and the registry, migration set
/// and `Tenancy` it opens on demand.
struct CommandContext {
    let options: GlobalOptions
    let logger: Logger
    let output: Output

    init(_ options: GlobalOptions) throws {
        self.options = options
        let level = try options.resolvedLogLevel()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        self.logger = Logger(label: "tenantctl")
        self.output = Output(json: options.json)
    }

    func openRegistry() throws -> TenantRegistry {
        try TenantRegistry(path: options.registryPath)
    }

    func loadMigrations() throws -> MigrationSet {
        try MigrationSet(directory: URL(fileURLWithPath: options.migrationsDirectory))
    }

    /// The level of a tenant fully migrated with the current files.
    func currentLevel() throws -> MigrationLevel? {
        let migrations = try loadMigrations()
        return migrations.latest.map { MigrationLevel(lastFile: $0.filename, setChecksum: migrations.checksum) }
    }

    /// Runs `body` with a `Tenancy` over its own pool of `connections` (plus one spare), after
    /// checking that the server answers when `checkingConnection` is set.
    func withTenancy<Result: Sendable>(connections: Int = 4, checkingConnection: Bool = true, _ body: (Tenancy) async throws -> Result) async throws -> Result {
        var configuration = Tenancy.Configuration()
        configuration.registryPath = options.registryPath
        configuration.migrationsDirectory = URL(fileURLWithPath: options.migrationsDirectory)
        configuration.provisioner.schemaPrefix = options.resolvedSchemaPrefix
        let tenancy = try Tenancy(databaseConfig: try options.databaseConfig(connections: connections), configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await tenancy.run() }
            defer { group.cancelAll() }
            if checkingConnection { try await tenancy.pool.checkConnection() }
            return try await body(tenancy)
        }
    }
}
