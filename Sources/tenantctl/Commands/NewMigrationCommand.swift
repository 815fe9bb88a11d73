import ArgumentParser
import Foundation
import SchemaDB

struct NewMigrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new-migration",
        abstract: "Write the next numbered migration file into the migrations directory.")

    @Argument(help: "What the migration does, such as add_invoices.") var name: String
    @OptionGroup var options: GlobalOptions

    struct Created: Encodable {
        var file: String
        var path: String
    }

    func run() async throws {
        let context = try CommandContext(options)
        let url = try MigrationSet.createNextFile(named: name, in: URL(fileURLWithPath: options.migrationsDirectory))
        let created = Created(file: url.lastPathComponent, path: url.path)
        context.output.emit(created) { "created \(created.path); write its SQL with {{tables.name}} for the tenant's tables" }
    }
}
