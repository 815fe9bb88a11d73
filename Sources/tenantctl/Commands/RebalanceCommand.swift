import ArgumentParser
import Foundation
import Tenancy

struct RebalanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance",
        abstract: "Even out tenants across placements by weight; draining placements are emptied.",
        discussion: "--plan prints the moves and changes nothing; --apply performs them one at a time, as tenantctl move does (online, or --offline).")

    @Flag(help: "Print the moves; change nothing.") var plan = false
    @Flag(help: "Perform the moves, one at a time.") var apply = false
    @Flag(help: "Refuse each tenant while it is copied, instead of replicating it while it is served.") var offline = false
    @Option(parsing: .unconditional, help: "At most this many moves.") var maxMoves: Int?
    @OptionGroup var options: GlobalOptions

    struct Planned: Encodable {
        var moves: [RebalancePlan.Move]
        var loads: [RebalancePlan.Load]
        @Nullable var applied: [String]?
    }

    func validate() throws {
        guard plan != apply else { throw ValidationError("give --plan or --apply") }
        if plan && offline { throw ValidationError("--offline goes with --apply") }
        if let maxMoves, maxMoves < 1 { throw ValidationError("--max-moves must be at least 1") }
    }

    func run() async throws {
        let context = try CommandContext(options)
        let output = context.output
        let planned = try await context.withTenancy(needsMigrations: apply) { tenancy in
            let proposal = try await tenancy.rebalancePlan(maximumMoves: maxMoves)
            guard apply else { return Planned(moves: proposal.moves, loads: proposal.loads, applied: nil) }
            let reports = try await tenancy.apply(proposal, mode: offline ? .offline : .online) { report in
                if !output.json { Output.note("moved \(report.tenant.slug) from \(report.source) to \(report.target) (\(report.rows) rows, refused \(Output.format(milliseconds: report.refusedMilliseconds)))") }
            }
            return Planned(moves: proposal.moves, loads: proposal.loads, applied: reports.map(\.tenant.slug.rawValue))
        }
        output.emit(planned) {
            var table = TextTable("placement", "state", "weight", "tenants", "target", "after")
            for load in planned.loads { table.add(load.placement, load.state.rawValue, "\(load.weight)", "\(load.before)", "\(load.target)", "\(load.after)") }
            var text = table.render()
            if planned.moves.isEmpty { return text + "\n\nthe placements are balanced; nothing to move" }
            var moves = TextTable("tenant", "from", "to")
            for move in planned.moves { moves.add(move.slug, move.from, move.to) }
            text += "\n\n" + moves.render()
            text += planned.applied.map { "\n\n\($0.count) of \(planned.moves.count) moves made" } ?? "\n\n\(planned.moves.count) moves planned; nothing was changed (--apply performs them)"
            return text
        }
    }
}
