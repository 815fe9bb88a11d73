import ArgumentParser
import Foundation
import Tenancy

struct MoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move",
        abstract: "Move a tenant's schema to another placement.",
        discussion: """
            Online (the default), the tenant is served while logical replication copies it (the source server needs \
            wal_level=logical; the target server connects to it as tenantctl does, with its own password file), and \
            writes wait only for the final catch-up, check and switch. --offline: the tenant is refused while its \
            tables are copied in one snapshot. Either way every table is checked (row count and checksum) before the \
            switch, and the old schema is kept, frozen read-only. A move that was interrupted is finished with \
            --resume or rolled back with --abort.
            """)

    @Argument(help: "The tenant's slug.") var slug: String
    @Option(help: "The placement to move it to.") var to: String?
    @Flag(help: "Refuse the tenant while it is copied, instead of replicating it while it is served.") var offline = false
    @Flag(help: "Finish an interrupted move.") var resume = false
    @Flag(help: "Roll back an interrupted move.") var abort = false
    @OptionGroup var options: GlobalOptions

    struct Moved: Encodable {
        var slug: String
        var outcome: String
        var source: String
        var target: String
        var placement: String
        var status: String
        var tables: Int
        var rows: Int64
        var mode: String
        var refusedMs: Int
        var totalMs: Int
    }

    func validate() throws {
        let modes = [to != nil, resume, abort].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give --to PLACEMENT, --resume or --abort") }
        if to == nil && offline { throw ValidationError("--offline goes with --to; a resumed move keeps its mode") }
    }

    func run() async throws {
        let context = try CommandContext(options)
        let report = try await context.withTenancy(connections: 4) { tenancy in
            if resume { return try await tenancy.resumeMove(slug) }
            if abort { return try await tenancy.abortMove(slug) }
            return try await tenancy.move(slug, to: to ?? "", mode: offline ? .offline : .online)
        }
        let moved = Moved(slug: report.tenant.slug.rawValue, outcome: report.outcome.rawValue, source: report.source, target: report.target,
                          placement: report.tenant.placement, status: report.tenant.state.rawValue, tables: report.tables, rows: report.rows,
                          mode: report.mode.rawValue, refusedMs: report.refusedMilliseconds, totalMs: report.totalMilliseconds)
        context.output.emit(moved) {
            switch report.outcome {
            case .moved:
                "tenant \(moved.slug) moved from \(moved.source) to \(moved.target) (\(moved.mode)): \(moved.rows) rows in \(moved.tables) tables in \(Output.format(milliseconds: moved.totalMs)), writes held for \(Output.format(milliseconds: moved.refusedMs))"
            case .alreadyThere: "tenant \(moved.slug) is already on \(moved.target)"
            case .rolledBack: "the move of tenant \(moved.slug) to \(moved.target) was rolled back; it stays on \(moved.source), \(moved.status)"
            }
        }
    }
}
