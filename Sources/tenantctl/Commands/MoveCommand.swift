import ArgumentParser
import Foundation
import Tenancy

struct MoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move",
        abstract: "Move a tenant's schema to another placement.",
        discussion: """
            --offline: the tenant is refused by every server while its tables are copied in one snapshot, checked \
            table by table (row count and checksum) and switched; the old schema is kept, frozen read-only. A move \
            that was interrupted is finished with --resume or rolled back with --abort.
            """)

    @Argument(help: "The tenant's slug.") var slug: String
    @Option(help: "The placement to move it to.") var to: String?
    @Flag(help: "Refuse the tenant while it is copied (the only kind of move available).") var offline = false
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
        var refusedMs: Int
    }

    func validate() throws {
        let modes = [to != nil, resume, abort].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give --to PLACEMENT, --resume or --abort") }
        if to != nil && !offline {
            throw ValidationError("online moves are not available yet; pass --offline (the tenant is refused while it is copied)")
        }
    }

    func run() async throws {
        let context = try CommandContext(options)
        let report = try await context.withTenancy(connections: 4) { tenancy in
            if resume { return try await tenancy.resumeMove(slug) }
            if abort { return try await tenancy.abortMove(slug) }
            return try await tenancy.move(slug, to: to ?? "")
        }
        let moved = Moved(slug: report.tenant.slug.rawValue, outcome: report.outcome.rawValue, source: report.source, target: report.target,
                          placement: report.tenant.placement, status: report.tenant.state.rawValue, tables: report.tables, rows: report.rows,
                          refusedMs: report.refusedMilliseconds)
        context.output.emit(moved) {
            switch report.outcome {
            case .moved: "tenant \(moved.slug) moved from \(moved.source) to \(moved.target): \(moved.rows) rows in \(moved.tables) tables, refused for \(Output.format(milliseconds: moved.refusedMs))"
            case .alreadyThere: "tenant \(moved.slug) is already on \(moved.target)"
            case .rolledBack: "the move of tenant \(moved.slug) to \(moved.target) was rolled back; it stays on \(moved.source), \(moved.status)"
            }
        }
    }
}
