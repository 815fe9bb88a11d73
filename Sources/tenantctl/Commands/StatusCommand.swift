import ArgumentParser
import Foundation
import Tenancy

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Fleet summary: tenants per state, tenants behind the migration set, failures of the last run.")

    @OptionGroup var options: GlobalOptions

    struct Summary: Encodable {
        var counts: [String: Int]
        @Nullable var targetMigration: String?
        var behind: Int
        var behindTenants: [String]
        @Nullable var lastRun: FleetRunView?
        var lastRunFailures: [FleetItemView]
    }

    func run() async throws {
        let context = try CommandContext(options)
        let current = try context.currentLevel()
        let (counts, served, lastRun, failures) = try await context.withRegistry { registry in
            let counts = try await registry.countByState()
            let served = try await registry.tenants(in: .active) + registry.tenants(in: .suspended)
            let lastRun = try await registry.fleetRuns(limit: 1).first
            var failures: [FleetRunItem] = []
            if let lastRun { failures = try await registry.fleetRunItems(runID: lastRun.id, statuses: [.failed]) }
            return (counts, served, lastRun, failures)
        }
        let behind = served.filter { $0.migrationLevel != current }.map(\.slug.rawValue).sorted()
        let summary = Summary(
            counts: Dictionary(uniqueKeysWithValues: TenantState.allCases.map { ($0.rawValue, counts[$0] ?? 0) }),
            targetMigration: current?.lastFile, behind: behind.count, behindTenants: behind,
            lastRun: lastRun.map { FleetRunView($0) }, lastRunFailures: failures.map(FleetItemView.init))
        context.output.emit(summary) {
            var states = TextTable("state", "count")
            for state in TenantState.allCases { states.add(state.rawValue, "\(counts[state] ?? 0)") }
            var lines = [states.render(), ""]
            let shown = behind.prefix(10).joined(separator: ", ") + (behind.count > 10 ? ", …" : "")
            lines.append(behind.isEmpty ? "every tenant is at \(current?.lastFile ?? "the empty set")"
                                        : "\(behind.count) tenants behind \(current?.lastFile ?? "the empty set"): \(shown)")
            if let lastRun {
                lines.append("last " + runSummary(lastRun))
                if !failures.isEmpty { lines += ["", itemTable(failures)] }
            } else {
                lines.append("no fleet runs yet")
            }
            return lines.joined(separator: "\n")
        }
    }
}
