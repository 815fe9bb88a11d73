import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

/// `tenantctl`: onboard tenants, migrate the fleet, inspect the registry.
@main
struct TenantCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenantctl",
        abstract: "Schema-per-tenant PostgreSQL: onboard tenants and migrate them all.",
        discussion: """
            Exit codes: 0 success; 1 error; 2 bad usage or invalid input; 3 a fleet run finished with \
            tenants failed; 4 a lock is held by another run; 130/143 a fleet run stopped by SIGINT/SIGTERM.
            """,
        subcommands: [
            InitCommand.self, CreateCommand.self, ListCommand.self, ShowCommand.self, MigrateCommand.self,
            RunsCommand.self, StatusCommand.self, SuspendCommand.self, ResumeCommand.self, RenameCommand.self,
            DropCommand.self, SparesCommand.self, PlacementsCommand.self, MoveCommand.self, RebalanceCommand.self, DoctorCommand.self, NewMigrationCommand.self, RegistryCommand.self,
        ])

    static func main() async {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            Foundation.exit(reportParsingError(error))
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as ReportedFailure {
            Foundation.exit(failure.code)
        } catch let error as UsageError {
            Foundation.exit(report(error))
        } catch let error as TenancyError {
            Foundation.exit(report(error))
        } catch let error as SchemaDBError {
            Foundation.exit(report(error))
        } catch {
            Foundation.exit(reportParsingError(error))
        }
        Foundation.exit(ExitStatus.success)
    }

    /// Prints a failure: one line on stderr, and with `--json` an error document on stdout.
    private static func report(_ error: any Error) -> Int32 {
        let (exitCode, code, message) = ExitStatus.classify(error)
        Output.note("error: \(message)")
        if CommandLine.arguments.contains("--json") {
            print(Output.encode(["error": ["code": code, "message": message]]))
        }
        return exitCode
    }

    /// Help and version go to stdout with exit 0; usage errors become exit 2 with one line;
    /// anything else is an error (exit 1).
    private static func reportParsingError(_ error: any Error) -> Int32 {
        switch Self.exitCode(for: error) {
        case .success:
            print(fullMessage(for: error))
            return ExitStatus.success
        case .validationFailure:
            let message = Self.message(for: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "invalid arguments"
            return report(UsageError("\(message); see tenantctl help"))
        default:
            return report(error)
        }
    }
}
