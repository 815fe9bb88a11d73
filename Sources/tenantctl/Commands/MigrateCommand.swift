import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Migrate every tenant (--all), some tenants, or resume a run; --dry-run prints the plan.",
        discussion: "Each tenant migrates in one transaction. Failed tenants are rolled back and the run goes on; resume the run once they are fixed.")

    @Flag(help: "Every active and suspended tenant, and every spare schema.") var all = false
    @Argument(help: "Tenants to migrate.") var slugs: [String] = []
    @Option(parsing: .unconditional, help: "Tenants migrated at once.") var concurrency: Int = 4
    @Option(parsing: .unconditional, help: "Tenants of one placement migrated at once (default: an even share of --concurrency).")
    var concurrencyPerPlacement: Int?
    @Option(parsing: .unconditional, help: "Migrate the first K tenants one at a time; abort if any fails.") var canary: Int = 0
    @Option(name: .customLong("max-failures"), parsing: .unconditional, help: "Abort once more than N tenants failed.") var maxFailures: Int?
    @Flag(name: .customLong("dry-run"), help: "Print what would run, change nothing.") var dryRun = false
    @Option(parsing: .unconditional, help: ArgumentHelp("Resume run RUN: retry its failed and unstarted tenants.", valueName: "run")) var resume: Int64?
    @Option(parsing: .unconditional, help: ArgumentHelp("Wait up to this many seconds for another fleet run to finish, instead of failing at once.", valueName: "seconds"))
    var wait: Int?
    @Option(name: .customLong("lock-timeout"), parsing: .unconditional, help: ArgumentHelp("The longest wait for each tenant's locks, in seconds.", valueName: "seconds"))
    var lockTimeout: Double = 10
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let selection = try validatedSelection()
        let context = try CommandContext(options)
        if dryRun {
            try await printPlan(selection, context)
            return
        }
        var fleetOptions = FleetMigrator.Options()
        fleetOptions.concurrency = concurrency
        fleetOptions.concurrencyPerPlacement = concurrencyPerPlacement
        fleetOptions.canary = canary
        fleetOptions.maxFailures = maxFailures
        fleetOptions.tenantLockTimeout = .milliseconds(Int64(lockTimeout * 1000))
        fleetOptions.fleetLockWait = wait.map { .seconds($0) }

        let stop = FleetStop()
        let trap = SignalTrap(stop: stop)
        let bar = ProgressBar(enabled: !options.json && ProgressBar.stderrIsTerminal)
        let report = try await context.withTenancy(connections: concurrency) { tenancy in
            defer { bar.finish() }
            if let resume {
                return try await tenancy.fleet.resume(runID: resume, options: fleetOptions, stop: stop, progress: bar.update)
            }
            return try await tenancy.fleet.run(selection!, options: fleetOptions, stop: stop, progress: bar.update)
        }
        context.output.emit(FleetRunView(report.run, items: report.items)) {
            var text = runSummary(report.run)
            if !report.failures.isEmpty { text = itemTable(report.failures) + "\n\n" + text }
            return text
        }
        let run = report.run
        if let signal = trap.signal, run.status == .interrupted {
            Output.note("error: run \(run.id) stopped with \(run.counts.pending + run.counts.running) tenants pending; resume it with: tenantctl migrate --resume \(run.id)")
            throw ReportedFailure(code: 128 + signal)
        }
        if run.counts.failed > 0 || run.status != .completed {
            Output.note("error: run \(run.id) \(run.status.rawValue) with \(run.counts.failed) tenants failed and \(run.counts.pending + run.counts.running) pending; fix the cause and resume it with: tenantctl migrate --resume \(run.id)")
            throw ReportedFailure(code: ExitStatus.tenantsFailed)
        }
    }

    /// The tenants to migrate, or `nil` for a resume.
    private func validatedSelection() throws -> FleetMigrator.Selection? {
        guard [all, !slugs.isEmpty, resume != nil].filter({ $0 }).count == 1 else {
            throw UsageError("say what to migrate: --all, one or more slugs, or --resume RUN (only one of them)")
        }
        if dryRun && resume != nil { throw UsageError("--dry-run plans a new run; it cannot be combined with --resume") }
        guard concurrency >= 1 && concurrency <= 256 else { throw UsageError("--concurrency must be from 1 to 256, not \(concurrency)") }
        if let perPlacement = concurrencyPerPlacement, !(1...256).contains(perPlacement) {
            throw UsageError("--concurrency-per-placement must be from 1 to 256, not \(perPlacement)")
        }
        guard canary >= 0 else { throw UsageError("--canary must be 0 or more") }
        if let maxFailures, maxFailures < 0 { throw UsageError("--max-failures must be 0 or more") }
        if let wait, wait < 0 { throw UsageError("--wait must be 0 or more seconds") }
        guard lockTimeout > 0 && lockTimeout <= 3600 else { throw UsageError("--lock-timeout must be more than 0 and at most 3600 seconds") }
        if resume != nil { return nil }
        return all ? .all : .tenants(try slugs.map(TenantSlug.init))
    }

    private func printPlan(_ selection: FleetMigrator.Selection?, _ context: CommandContext) async throws {
        struct PlanView: Encodable {
            struct Entry: Encodable {
                @Nullable var slug: String?
                var schema: String
                var status: String
                var pending: [String]
                @Nullable var problem: String?
            }
            @Nullable var targetMigration: String?
            var total: Int
            var behind: Int
            var blocked: Int
            var tenants: [Entry]
        }
        let plan = try await context.withTenancy(connections: concurrency) { try await $0.fleet.plan(selection!, concurrency: concurrency) }
        let view = PlanView(
            targetMigration: plan.target?.lastFile, total: plan.entries.count, behind: plan.behind.count, blocked: plan.blocked.count,
            tenants: plan.entries.map { .init(slug: $0.slug, schema: $0.schema, status: $0.state.rawValue, pending: $0.pending, problem: $0.problem) })
        context.output.emit(view) {
            var table = TextTable("tenant", "status", "pending", "problem")
            for entry in plan.entries where !entry.pending.isEmpty || entry.problem != nil {
                table.add(entry.slug ?? "(spare) \(entry.schema)", entry.state.rawValue, entry.pending.joined(separator: ", "), entry.problem ?? "")
            }
            let summary = "plan: \(view.behind) of \(view.total) tenants behind \(view.targetMigration ?? "the empty set"), \(view.blocked) blocked; nothing was changed"
            return table.rows.isEmpty ? summary : table.render() + "\n\n" + summary
        }
    }
}
