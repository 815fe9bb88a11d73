import ArgumentParser
import Foundation
import Tenancy

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Compare the registry with the database both ways; --fix repairs what is safe.",
        discussion: "Never drops a schema and never migrates: orphan schemas, missing tenant schemas, changed files and tenants behind are reported for you to decide.")

    @Flag(help: "Repair the safe findings.") var fix = false
    @OptionGroup var options: GlobalOptions

    struct Findings: Encodable {
        var clean: Bool
        var findings: [ReconcileReport.Finding]
    }

    func run() async throws {
        let context = try CommandContext(options)
        let report = try await context.withTenancy { try await $0.reconcile(fix: fix) }
        context.output.emit(Findings(clean: report.isClean, findings: report.findings)) {
            guard !report.findings.isEmpty else { return "the registry and the database agree" }
            var table = TextTable("finding", "tenant", "schema", "fixed", "detail")
            for finding in report.findings {
                table.add(finding.kind.rawValue, finding.slug ?? "-", finding.schema, finding.fixed ? "yes" : (finding.kind.needsAttention ? "no" : "-"), finding.detail)
            }
            return table.render()
        }
        if !report.isClean {
            let open = report.findings.filter { !$0.fixed && $0.kind.needsAttention }.count
            Output.note("error: \(open) findings need attention" + (fix ? "" : "; run doctor --fix to repair the safe ones"))
            throw ReportedFailure(code: ExitStatus.failure)
        }
    }
}
