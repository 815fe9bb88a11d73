import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the registry (idempotent), bind it to this database and schema prefix, and print the settings.")

    @OptionGroup var options: GlobalOptions

    struct Settings: Encodable {
        var database: String
        var serverVersion: String
        var registry: String
        var registryId: String
        var migrations: String
        var migrationFiles: Int
        var latestMigration: String
        var schemaPrefix: String
        var tenants: Int
        var spares: Int
    }

    func run() async throws {
        let context = try CommandContext(options)
        let directory = URL(fileURLWithPath: options.migrationsDirectory)
        let database = try options.databaseConfig().description
        let registry = try options.registryDescription()
        // An init that fails leaves no migrations directory behind (the registry is created
        // only once the database answered).
        let createsDirectory = !FileManager.default.fileExists(atPath: directory.path)
        if createsDirectory { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        let settings: Settings
        do {
            settings = try await readSettings(context, directory: directory, database: database, registry: registry)
        } catch {
            if createsDirectory, (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?.isEmpty == true {
                try? FileManager.default.removeItem(at: directory)
            }
            throw error
        }
        if createsDirectory && !options.json {
            Output.note("created the empty migrations directory \(directory.path); add files with tenantctl new-migration")
        }
        context.output.emit(settings) {
            var table = TextTable("setting", "value")
            table.add("database", "\(settings.database) (PostgreSQL \(settings.serverVersion))")
            table.add("registry", "\(settings.registry) (id \(settings.registryId))")
            table.add("migrations", "\(settings.migrations) (\(settings.migrationFiles) files, latest \(settings.latestMigration))")
            table.add("schema prefix", settings.schemaPrefix)
            table.add("tenants", "\(settings.tenants) (\(settings.spares) spares)")
            return table.render()
        }
    }

    /// Creates (or opens) and binds the registry, and reads what `init` prints.
    private func readSettings(_ context: CommandContext, directory: URL, database: String, registry: String) async throws -> Settings {
        try await context.withTenancy(connections: 1, creatingRegistry: true) { tenancy in
            let info = try await tenancy.ready()
            let version = try await tenancy.pool.database(schema: nil).fetchValue("SHOW server_version", as: String.self) ?? "?"
            let counts = try await tenancy.registry.countByState()
            return Settings(
                database: database, serverVersion: version, registry: registry, registryId: info.id, migrations: directory.path,
                migrationFiles: tenancy.migrations?.files.count ?? 0, latestMigration: tenancy.currentLevel?.lastFile ?? "-",
                schemaPrefix: tenancy.configuration.schemaPrefix,
                tenants: counts.filter { $0.key != .spare && $0.key != .deleted }.values.reduce(0, +), spares: counts[.spare] ?? 0)
        }
    }
}
