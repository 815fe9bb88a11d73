import ArgumentParser
import Foundation
import Tenancy

/// Prints a tenant after a lifecycle change.
private func emit(_ tenant: Tenant, _ context: CommandContext, _ message: String) throws {
    context.output.emit(TenantView(tenant, current: try? context.currentLevel())) { message }
}

struct SuspendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "suspend", abstract: "Suspend a tenant: its handles are refused until it is resumed.")

    @Argument var slug: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let slug = try TenantSlug(slug)
        let context = try CommandContext(options)
        let tenant = try await context.withTenancy(needsMigrations: false) { try await $0.suspend(slug.rawValue) }
        try emit(tenant, context, "tenant \(slug) is suspended")
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a suspended tenant.")

    @Argument var slug: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let slug = try TenantSlug(slug)
        let context = try CommandContext(options)
        let tenant = try await context.withTenancy(needsMigrations: false) { try await $0.resume(slug.rawValue) }
        try emit(tenant, context, "tenant \(slug) is active")
    }
}

struct RenameCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a tenant's slug. Its schema does not change.")

    @Argument var slug: String
    @Argument(help: "The new slug.") var newSlug: String
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let (old, new) = (try TenantSlug(slug), try TenantSlug(newSlug))
        let context = try CommandContext(options)
        let tenant = try await context.withTenancy(needsMigrations: false) { try await $0.rename(old.rawValue, to: new.rawValue) }
        try emit(tenant, context, "tenant \(old) is now \(new) (schema \(tenant.schema))")
    }
}

struct DropCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop",
        abstract: "Drop a tenant's schema and all its data; the registry keeps a tombstone.")

    @Argument var slug: String
    @Flag(help: "Confirm that the tenant's data is to be deleted.") var yes = false
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        let slug = try TenantSlug(slug)
        guard yes else {
            throw UsageError("refusing to drop tenant \"\(slug)\" without --yes: it deletes the schema and all its data")
        }
        let context = try CommandContext(options)
        let tenant = try await context.withTenancy(needsMigrations: false) { try await $0.delete(slug.rawValue, confirmingDataLoss: true) }
        try emit(tenant, context, "tenant \(slug) was dropped (schema \(tenant.schema)); the registry keeps its tombstone")
    }
}
