import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "The registry itself: where it is and what it describes, and copying it between SQLite and PostgreSQL.",
        subcommands: [Show.self, Copy.self],
        defaultSubcommand: Show.self)

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "The registry's location, id, format and the database and prefix it describes.")

        @OptionGroup var options: GlobalOptions

        struct Details: Encodable {
            var location: String
            var id: String
            var formatVersion: Int
            @Nullable var database: String?
            @Nullable var schemaPrefix: String?
            @Nullable var migrationModule: String?
            var slugReuseDelayMs: Int64
            var notificationChannel: String
        }

        func run() async throws {
            let context = try CommandContext(options)
            let location = try options.registryDescription()
            let info = try await context.withRegistry { try await $0.info() }
            let details = Details(
                location: location, id: info.id, formatVersion: info.formatVersion, database: info.database?.description, schemaPrefix: info.schemaPrefix, migrationModule: info.migrationModule,
                slugReuseDelayMs: info.slugReuseDelay.wholeMilliseconds,
                notificationChannel: info.notificationChannel)
            context.output.emit(details) {
                var table = TextTable("setting", "value")
                table.add("location", details.location)
                table.add("id", details.id)
                table.add("format", "\(details.formatVersion)")
                table.add("database", details.database ?? "- (bound on first use)")
                table.add("schema prefix", details.schemaPrefix ?? "-")
                table.add("migration module", details.migrationModule ?? "-")
                table.add("slug reuse delay", Output.format(milliseconds: Int(details.slugReuseDelayMs)))
                table.add("channel", details.notificationChannel)
                return table.render()
            }
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "copy",
            abstract: "Copy the registry, with its events and fleet ledger, into a new registry: a SQLite file or a postgres:// URL.",
            discussion: "Stop every process that changes tenants first, and point them at the new registry afterwards. The copy keeps every id and the registry's own id; the source is not changed.")

        @Option(name: .customLong("to"), help: ArgumentHelp("The new registry: a SQLite file, or a postgres:// URL.", valueName: "path-or-url"))
        var target: String
        @Option(name: .customLong("to-schema"), help: ArgumentHelp("The schema of a PostgreSQL target. Default: tenancy.", valueName: "schema"))
        var targetSchema: String = TenantRegistry.defaultSchema
        @OptionGroup var options: GlobalOptions

        struct Copied: Encodable {
            var from: String
            var to: String
            var tenants: Int
            var events: Int
            var fleetRuns: Int
            var fleetRunItems: Int
        }

        func run() async throws {
            guard !target.isEmpty else { throw UsageError("--to needs a SQLite file or a postgres:// URL") }
            let context = try CommandContext(options)
            let from = try options.registryDescription()
            let choice = try GlobalOptions.registryChoice(target, schema: targetSchema, environment: ProcessInfo.processInfo.environment)
            let (report, to) = try await context.withRegistry { source in
                switch choice {
                case .postgres(let config, let schema):
                    return try await DatabasePool.withPool(configuration: config, logger: context.logger) { pool in
                        let destination = try TenantRegistry(pool: pool, schema: schema, creatingIfMissing: true)
                        return (try await source.copy(to: destination), destination.location)
                    }
                case .file(let path):
                    let destination = try TenantRegistry(path: path, creatingIfMissing: true)
                    return (try await source.copy(to: destination), destination.location)
                }
            }
            let copied = Copied(from: from, to: to, tenants: report.tenants, events: report.events, fleetRuns: report.fleetRuns, fleetRunItems: report.fleetRunItems)
            context.output.emit(copied) {
                "copied \(copied.tenants) tenants and spares, \(copied.events) events and \(copied.fleetRuns) fleet runs (\(copied.fleetRunItems) items) from \(copied.from) to \(copied.to)"
            }
        }
    }
}
