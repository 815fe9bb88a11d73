import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

struct PlacementsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "placements",
        abstract: "The PostgreSQL databases tenants live on: add one, list them, drain or open one.",
        subcommands: [List.self, Show.self, Add.self, Drain.self, Open.self, Weight.self, Cleanup.self, Remove.self],
        defaultSubcommand: List.self)

    /// A placement as `--json` prints it.
    struct PlacementView: Encodable {
        var name: String
        var state: String
        var weight: Int
        @Nullable var url: String?
        @Nullable var database: String?
        @Nullable var systemIdentifier: String?
        var tenants: Int
        var spares: Int
        var byState: [String: Int]
        var reachable: Bool
        @Nullable var problem: String?
        @Nullable var tenantBytes: Int64?

        init(_ report: Tenancy.PlacementReport) {
            let placement = report.placement
            name = placement.name
            state = placement.state.rawValue
            weight = placement.weight
            url = placement.url
            database = placement.databaseName
            systemIdentifier = placement.systemIdentifier
            tenants = report.counts.tenants
            spares = report.counts.spares
            byState = Dictionary(uniqueKeysWithValues: report.counts.byState.map { ($0.key.rawValue, $0.value) })
            reachable = report.isReachable
            problem = report.problem
            tenantBytes = report.tenantBytes
        }
    }

    static func reports(_ context: CommandContext) async throws -> [PlacementView] {
        try await context.withTenancy(needsMigrations: false) { try await $0.placementReports().map(PlacementView.init) }
    }

    static func size(_ bytes: Int64?) -> String {
        guard let bytes else { return "-" }
        return ByteCountFormatter.string(fromByteCount: bytes, countStyle: .binary)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every placement: state, weight, tenants, spares, size, reachability.")

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let context = try CommandContext(options)
            let views = try await PlacementsCommand.reports(context)
            context.output.emit(views) {
                var table = TextTable("name", "state", "weight", "tenants", "spares", "size", "status")
                for view in views {
                    table.add(view.name, view.state, "\(view.weight)", "\(view.tenants)", "\(view.spares)", PlacementsCommand.size(view.tenantBytes),
                              view.reachable ? "reachable" : "unreachable: \(view.problem ?? "")")
                }
                return table.render()
            }
            if views.contains(where: { !$0.reachable }) { throw ReportedFailure(code: ExitStatus.failure) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One placement in detail.")

        @Argument(help: "The placement's name.") var name: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let context = try CommandContext(options)
            guard let view = try await PlacementsCommand.reports(context).first(where: { $0.name == name }) else {
                throw TenancyError(code: .placementNotFound, message: "no placement \"\(name)\"; list them with `tenantctl placements list`")
            }
            context.output.emit(view) {
                var table = TextTable("field", "value")
                table.add("name", view.name)
                table.add("state", view.state)
                table.add("weight", "\(view.weight)")
                table.add("url", view.url ?? "(the database tenantctl connects to)")
                table.add("database", view.database.map { "\($0) of server \(view.systemIdentifier ?? "?")" } ?? "-")
                table.add("tenants", "\(view.tenants)")
                table.add("spares", "\(view.spares)")
                for (state, count) in view.byState.sorted(by: { $0.key < $1.key }) { table.add("  \(state)", "\(count)") }
                table.add("size", PlacementsCommand.size(view.tenantBytes))
                table.add("status", view.reachable ? "reachable" : "unreachable: \(view.problem ?? "")")
                return table.render()
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add a PostgreSQL database as a placement.",
            discussion: """
                The registry records the URL without its password, and the database's identity: every process refuses a \
                placement whose URL later leads to another database. Keep the password off the command line: give the URL \
                without it and use PGPASSWORD or ~/.pgpass, or set TENANCY_PLACEMENT_<NAME>_URL and leave URL out.
                """)

        @Argument(help: "1-40 lowercase letters, digits and '-', starting with a letter.") var name: String
        @Argument(help: "postgres://user@host:port/database (default: TENANCY_PLACEMENT_<NAME>_URL).") var url: String?
        @Option(parsing: .unconditional, help: "Its share of new tenants, from 1 to 1000.") var weight: Int = 1
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            if let problem = Placement.problem(withName: name) { throw UsageError("invalid placement name \"\(name)\": \(problem)") }
            let environment = ProcessInfo.processInfo.environment
            guard let setting = url ?? environment[Placement.environmentVariable(forName: name)].flatMap({ $0.isEmpty ? nil : $0 }) else {
                throw UsageError("give the placement's URL, or set \(Placement.environmentVariable(forName: name))")
            }
            let database = try DatabaseConfig(url: setting).fillingPassword(from: environment)
            let context = try CommandContext(options)
            let placement = try await context.withTenancy(needsMigrations: false) { try await $0.addPlacement(name, database: database, weight: weight) }
            context.output.emit(placement) {
                "placement \(placement.name) added: \(placement.identity.map { "\($0)" } ?? "-"), weight \(placement.weight); new tenants may go there now"
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drain", abstract: "Send new tenants and spares elsewhere; the tenants on it stay and are served.")

        @Argument(help: "The placement's name.") var name: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await PlacementsCommand.set(name, state: .draining, weight: nil, options: options) { "placement \($0.name) is draining: new tenants and spares go elsewhere" }
        }
    }

    struct Open: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "open", abstract: "Let new tenants and spares go to a placement again.")

        @Argument(help: "The placement's name.") var name: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await PlacementsCommand.set(name, state: .open, weight: nil, options: options) { "placement \($0.name) is open to new tenants" }
        }
    }

    struct Weight: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "weight", abstract: "Set a placement's share of new tenants.")

        @Argument(help: "The placement's name.") var name: String
        @Argument(help: "From 1 to 1000.") var weight: Int
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await PlacementsCommand.set(name, state: nil, weight: weight, options: options) { "placement \($0.name) has weight \($0.weight)" }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Forget a drained placement that no tenant, spare or move names any more.")

        @Argument(help: "The placement's name.") var name: String
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let context = try CommandContext(options)
            try await context.withTenancy(needsMigrations: false) { try await $0.removePlacement(name) }
            context.output.emit(["removed": name]) { "placement \(name) removed; its database is left as it is" }
        }
    }

    struct Cleanup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cleanup", abstract: "Drop the read-only schemas moves left behind on their old placements.")

        @Option(parsing: .unconditional, help: "Keep those frozen less than this many seconds ago.") var olderThan: Int = 0
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            guard olderThan >= 0 else { throw UsageError("--older-than must be 0 or more seconds, not \(olderThan)") }
            let context = try CommandContext(options)
            let schemas = try await context.withTenancy(needsMigrations: false) { try await $0.dropMovedAwaySchemas(olderThan: .seconds(olderThan)) }
            context.output.emit(schemas) {
                guard !schemas.isEmpty else { return "no schema left behind by a move" }
                var table = TextTable("placement", "schema", "dropped", "note")
                for schema in schemas { table.add(schema.placement, schema.schema, schema.dropped ? "yes" : "no", schema.note) }
                return table.render()
            }
        }
    }

    static func set(_ name: String, state: Placement.State?, weight: Int?, options: GlobalOptions, message: (Placement) -> String) async throws {
        let context = try CommandContext(options)
        let placement = try await context.withTenancy(needsMigrations: false) { try await $0.setPlacement(name, state: state, weight: weight) }
        context.output.emit(placement) { message(placement) }
    }
}
