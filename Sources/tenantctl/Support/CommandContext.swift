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

    func loadMigrations() throws -> MigrationSet {
        try MigrationSet(directory: URL(fileURLWithPath: options.migrationsDirectory))
    }

    /// The level of a tenant fully migrated with the current files.
    func currentLevel() throws -> MigrationLevel? {
        let migrations = try loadMigrations()
        return migrations.latest.map { MigrationLevel(lastFile: $0.filename, setChecksum: migrations.checksum) }
    }

    /// Runs `body` with the registry, read-only: a SQLite file needs no database connection.
    /// Only `init` creates a registry; here a missing one is an error naming where it was looked for.
    func withRegistry<Result: Sendable>(_ body: (TenantRegistry) async throws -> Result) async throws -> Result {
        switch try options.registryChoice() {
        case .file(let path):
            return try await body(try TenantRegistry(path: path))
        case .postgres(let config, let schema):
            return try await DatabasePool.withPool(configuration: config, logger: logger) { pool in
                try await body(try TenantRegistry(pool: pool, schema: schema))
            }
        }
    }

    /// Runs `body` with a `Tenancy` over its own pool of `connections` (plus one spare), after
    /// checking that the server answers when `checkingConnection` is set.
    /// - Parameters:
    ///   - needsMigrations: Load the migration set; commands that only change a tenant's state
    ///     work without one.
    ///   - creatingRegistry: Create the registry when it does not exist (`init` only).
    func withTenancy<Result: Sendable>(
        connections: Int = 4, checkingConnection: Bool = true, needsMigrations: Bool = true, creatingRegistry: Bool = false,
        _ body: (Tenancy) async throws -> Result
    ) async throws -> Result {
        let database = try options.databaseConfig(connections: connections)
        if creatingRegistry && checkingConnection {
            // No registry is created for a database that cannot be reached.
            try await DatabasePool.withPool(configuration: database, logger: logger) { try await $0.checkConnection() }
        }
        var configuration = Tenancy.Configuration()
        configuration.registry = try options.registryLocation(database: database)
        configuration.createsRegistry = creatingRegistry
        configuration.migrationsDirectory = needsMigrations ? URL(fileURLWithPath: options.migrationsDirectory) : nil
        configuration.schemaPrefix = options.resolvedSchemaPrefix
        configuration.listensForChanges = false
        configuration.placementDatabases = try Tenancy.Configuration.placementDatabases(from: ProcessInfo.processInfo.environment)
        let tenancy = try Tenancy(databaseConfig: database, configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await tenancy.run() }
            defer { group.cancelAll() }
            if checkingConnection { try await tenancy.pool.checkConnection() }
            return try await body(tenancy)
        }
    }
}
