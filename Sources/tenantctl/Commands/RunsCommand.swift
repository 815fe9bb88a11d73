import ArgumentParser
import Foundation
import Tenancy

struct RunsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "The fleet-run ledger: recent runs, or one run's tenants.",
        subcommands: [List.self, Show.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Recent fleet runs, newest first.")

        @Option(parsing: .unconditional, help: "At most this many runs.") var limit: Int = 20
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            guard limit >= 1 else { throw UsageError("--limit must be at least 1") }
            let context = try CommandContext(options)
            let runs = try await context.withRegistry { try await $0.fleetRuns(limit: limit) }
            context.output.emit(runs.map { FleetRunView($0) }) {
                guard !runs.isEmpty else { return "no fleet runs yet" }
                var table = TextTable("run", "status", "started", "took", "target", "total", "migrated", "skipped", "failed", "pending")
                for run in runs {
                    let took = run.finishedAt.map { Output.format(milliseconds: Int($0.timeIntervalSince(run.startedAt) * 1000)) } ?? "-"
                    table.add("\(run.id)", run.status.rawValue, Output.format(run.startedAt), took, run.target?.lastFile ?? "-", "\(run.counts.total)",
                              "\(run.counts.succeeded)", "\(run.counts.skipped)", "\(run.counts.failed)", "\(run.counts.pending + run.counts.running)")
                }
                return table.render()
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One fleet run and each of its tenants.")

        @Argument(help: "The run id.") var id: Int64
        @Option(help: ArgumentHelp("Only tenants in this state: \(FleetRunItem.Status.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "state"))
        var status: String?
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            var statuses: Set<FleetRunItem.Status>?
            if let status {
                guard let parsed = FleetRunItem.Status(rawValue: status) else {
                    throw UsageError("unknown item status \"\(status)\"; use one of \(FleetRunItem.Status.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                statuses = [parsed]
            }
            let context = try CommandContext(options)
            let (run, items) = try await context.withRegistry { registry in
                guard let run = try await registry.fleetRun(id: id) else {
                    throw TenancyError(code: .fleetRunNotFound, message: "no fleet run \(id); list the runs with tenantctl runs")
                }
                return (run, try await registry.fleetRunItems(runID: id, statuses: statuses))
            }
            context.output.emit(FleetRunView(run, items: items)) {
                (items.isEmpty ? "" : itemTable(items) + "\n\n") + runSummary(run)
            }
        }
    }
}
