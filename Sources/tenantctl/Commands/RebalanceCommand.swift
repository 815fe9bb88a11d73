import ArgumentParser
import Foundation
import Tenancy

struct RebalanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance",
        abstract: "Even out tenants (or their bytes) across placements by weight; draining placements are emptied.",
        discussion: "--plan prints the moves and changes nothing; --apply performs them one at a time, as tenantctl move does (online, or --offline). --by bytes evens out the size of the tenants' schemas instead of their number.")

    @Flag(help: "Print the moves; change nothing.") var plan = false
    @Flag(help: "Perform the moves, one at a time.") var apply = false
    @Flag(help: "Refuse each tenant while it is copied, instead of replicating it while it is served.") var offline = false
    @Option(parsing: .unconditional, help: "At most this many moves.") var maxMoves: Int?
    @Option(help: "What to even out: tenants (their number) or bytes (the size of their schemas).") var by = RebalancePlan.Measure.tenants.rawValue
    @OptionGroup var options: GlobalOptions

    struct Planned: Encodable {
        var measure: RebalancePlan.Measure
        var moves: [RebalancePlan.Move]
        var loads: [RebalancePlan.Load]
        @Nullable var applied: [String]?
    }

    func validate() throws {
        guard plan != apply else { throw ValidationError("give --plan or --apply") }
        if plan && offline { throw ValidationError("--offline goes with --apply") }
        if let maxMoves, maxMoves < 1 { throw ValidationError("--max-moves must be at least 1") }
        guard RebalancePlan.Measure(rawValue: by) != nil else { throw ValidationError("--by takes tenants or bytes, not \(by.debugDescription)") }
    }

    func run() async throws {
        let context = try CommandContext(options)
        let output = context.output
        let planned = try await context.withTenancy(needsMigrations: apply) { tenancy in
            let proposal = try await tenancy.rebalancePlan(by: RebalancePlan.Measure(rawValue: by) ?? .tenants, maximumMoves: maxMoves)
            guard apply else { return Planned(measure: proposal.measure, moves: proposal.moves, loads: proposal.loads, applied: nil) }
            let reports = try await tenancy.apply(proposal, mode: offline ? .offline : .online) { report in
                if !output.json { Output.note("moved \(report.tenant.slug) from \(report.source) to \(report.target) (\(report.rows) rows, refused \(Output.format(milliseconds: report.refusedMilliseconds)))") }
            }
            return Planned(measure: proposal.measure, moves: proposal.moves, loads: proposal.loads, applied: reports.map(\.tenant.slug.rawValue))
        }
        output.emit(planned) {
            let amount = { (value: Int64) in planned.measure == .bytes ? PlacementsCommand.size(value) : "\(value)" }
            var table = TextTable("placement", "state", "weight", planned.measure.rawValue, "target", "after")
            for load in planned.loads { table.add(load.placement, load.state.rawValue, "\(load.weight)", amount(load.before), amount(load.target), amount(load.after)) }
            var text = table.render()
            if planned.moves.isEmpty { return text + "\n\nthe placements are balanced; nothing to move" }
            var moves = planned.measure == .bytes ? TextTable("tenant", "from", "to", "size") : TextTable("tenant", "from", "to")
            for move in planned.moves {
                if planned.measure == .bytes { moves.add(move.slug, move.from, move.to, amount(move.size)) } else { moves.add(move.slug, move.from, move.to) }
            }
            text += "\n\n" + moves.render()
            text += planned.applied.map { "\n\n\($0.count) of \(planned.moves.count) moves made" } ?? "\n\n\(planned.moves.count) moves planned; nothing was changed (--apply performs them)"
            return text
        }
    }
}
