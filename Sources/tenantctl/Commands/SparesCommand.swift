import ArgumentParser
import Foundation
import Tenancy

struct SparesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spares",
        abstract: "Warm spare schemas: fully migrated, unassigned, claimed by create with no DDL.",
        subcommands: [Fill.self, List.self],
        defaultSubcommand: List.self)

    struct SpareView: Encodable {
        var schema: String
        var placement: String
        @Nullable var migrationLevel: String?
        var upToDate: Bool
        var createdAt: Date
    }

    static func emit(_ spares: [SpareSchema], _ context: CommandContext, current: MigrationLevel?) {
        let views = spares.map { SpareView(schema: $0.schema, placement: $0.placement, migrationLevel: $0.migrationLevel?.lastFile, upToDate: $0.migrationLevel == current, createdAt: $0.createdAt) }
        context.output.emit(views) {
            guard !views.isEmpty else { return "no spares" }
            var table = TextTable("schema", "placement", "migration", "created")
            for view in views { table.add(view.schema, view.placement, (view.migrationLevel ?? "-") + (view.upToDate ? "" : " (behind)"), Output.format(view.createdAt)) }
            return table.render() + "\n\n\(views.count) spares"
        }
    }

    struct Fill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "fill", abstract: "Provision N more spare schemas.")

        @Argument(help: "How many spares to add.") var count: Int
        @Option(parsing: .unconditional, help: "Spares provisioned at once.") var concurrency: Int = 4
        @Option(help: "The placement to provision them on.") var placement: String = Placement.defaultName
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            guard (1...10_000).contains(count) else { throw UsageError("the spare count must be from 1 to 10000, not \(count)") }
            guard (1...256).contains(concurrency) else { throw UsageError("--concurrency must be from 1 to 256, not \(concurrency)") }
            let context = try CommandContext(options)
            let (spares, current) = try await context.withTenancy(connections: concurrency) { tenancy in
                (try await tenancy.fillSpares(count: count, concurrency: concurrency, placement: placement), tenancy.currentLevel)
            }
            SparesCommand.emit(spares, context, current: current)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Spare schemas, oldest (claimed next) first.")

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let context = try CommandContext(options)
            let spares = try await context.withRegistry { try await $0.spares() }
            SparesCommand.emit(spares, context, current: try? context.currentLevel())
        }
    }
}
