import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

/// Bad usage or invalid input: exit code 2.
struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A failure already reported on stdout and stderr, ending the process with `code`.
struct ReportedFailure: Error {
    var code: Int32
}

/// The exit codes of `tenantctl`.
enum ExitStatus {
    static let success: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let tenantsFailed: Int32 = 3
    static let locked: Int32 = 4

    /// The exit code, machine-readable code and one-line message for `error`.
    static func classify(_ error: any Error) -> (exitCode: Int32, code: String, message: String) {
        switch error {
        case let error as UsageError:
            return (usage, "usage", error.description)
        case let error as TenancyError:
            let exitCode: Int32 = switch error.code {
            case .invalidSlug, .confirmationRequired, .invalidArgument, .registryNotFound, .registryMismatch, .migrationSetUnavailable,
                 .placementNotFound, .placementExists: usage
            case .fleetLocked, .provisioningInProgress, .tenantMoving: locked
            case .fleetRunInterrupted: tenantsFailed
            default: failure
            }
            return (exitCode, snakeCase(error.code.description), error.description)
        case let error as SchemaDBError:
            let exitCode: Int32 = switch error.code {
            case .invalidConfiguration, .invalidIdentifier, .invalidMigrationFile, .migrationDirectoryUnreadable: usage
            case .migrationLockTimeout: locked
            default: failure
            }
            return (exitCode, snakeCase(error.code.description), error.description)
        default:
            let text = String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
            return (failure, "error", text)
        }
    }

    private static func snakeCase(_ name: String) -> String {
        name.reduce(into: "") { result, character in
            if character.isUppercase { result += "_" + character.lowercased() } else { result.append(character) }
        }
    }
}
