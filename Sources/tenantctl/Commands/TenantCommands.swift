import ArgumentParser
import Foundation
import SchemaDB
import Tenancy

struct CreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Onboard a tenant: claim a warm spare schema if there is one, else provision a new schema.")

    @Argument(help: "2-50 lowercase letters, digits and '-', starting with a letter.") var slug: String
    @Option(help: "A display name.") var name: String?
    @Option(help: "The placement (database) to put a new tenant on; by default the open placement with the fewest tenants for its weight.")
    var placement: String?
    @OptionGroup var options: GlobalOptions

    struct Created: Encodable {
        var tenant: TenantView
        var outcome: String
        var appliedFiles: [String]
        var durationMs: Int

        enum CodingKeys: String, CodingKey { case outcome, appliedFiles, durationMs }

        func encode(to encoder: any Encoder) throws {
            try tenant.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(outcome, forKey: .outcome)
            try container.encode(appliedFiles, forKey: .appliedFiles)
            try container.encode(durationMs, forKey: .durationMs)
        }
    }

    func run() async throws {
        let slug = try TenantSlug(slug)
        let context = try CommandContext(options)
        let created = try await context.withTenancy { tenancy in
            let start = ContinuousClock.now
            let report = try await tenancy.create(slug.rawValue, displayName: name, placement: placement)
            let elapsed = ContinuousClock.now - start
            return Created(tenant: TenantView(report.tenant, current: tenancy.currentLevel), outcome: report.outcome.rawValue,
                           appliedFiles: report.appliedFiles, durationMs: Int(elapsed.wholeMilliseconds))
        }
        context.output.emit(created) {
            let how = switch created.outcome {
            case "claimed_spare": "claimed a warm spare"
            case "provisioned": "provisioned, \(created.appliedFiles.count) migrations applied"
            case "adopted": "adopted the schema of an interrupted attempt"
            default: "already active, nothing changed"
            }
            let placed = created.tenant.placement == Placement.defaultName ? "" : " on placement \(created.tenant.placement)"
            return "tenant \(created.tenant.slug) is \(created.tenant.status) in schema \(created.tenant.schema)\(placed) (\(how), \(Output.format(milliseconds: created.durationMs)))"
        }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tenants: slug, schema, status and migration level.")

    @Option(help: ArgumentHelp("Only tenants in this state: \(TenantState.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "state"))
    var status: String?
    @Option(parsing: .unconditional, help: "At most this many tenants.") var limit: Int?
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        var state: TenantState?
        if let status {
            guard let parsed = TenantState(rawValue: status) else {
                throw UsageError("unknown status \"\(status)\"; use one of \(TenantState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            state = parsed
        }
        if let limit, limit < 1 { throw UsageError("--limit must be at least 1") }
        let context = try CommandContext(options)
        let current = try? context.currentLevel()
        let tenants = try await context.withRegistry { try await $0.tenants(in: state, limit: limit) }
        let views = tenants.map { TenantView($0, current: current) }
        context.output.emit(views) {
            guard !views.isEmpty else { return "no tenants" + (state.map { " in state \($0.rawValue)" } ?? "") }
            // The placement column appears once tenants live on more than one database.
            let placed = views.contains { $0.placement != Placement.defaultName }
            var table = placed ? TextTable("slug", "schema", "placement", "status", "migration", "name") : TextTable("slug", "schema", "status", "migration", "name")
            for view in views {
                let migration = (view.migrationLevel ?? "-") + (view.upToDate || view.status == "deleted" ? "" : " (behind)")
                if placed {
                    table.add(view.slug, view.schema, view.placement, view.status, migration, view.displayName ?? "")
                } else {
                    table.add(view.slug, view.schema, view.status, migration, view.displayName ?? "")
                }
            }
            return table.render()
        }
    }
}

struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one tenant, its applied migrations and its recent events.")

    @Argument var slug: String
    @Option(parsing: .unconditional, help: "Recent events to show.") var events: Int = 20
    @OptionGroup var options: GlobalOptions

    struct Details: Encodable {
        struct Migration: Encodable {
            var filename: String
            var checksum: String
            @Nullable var appliedAt: Date?
            @Nullable var executionTimeMs: Int?
        }

        struct Event: Encodable {
            var kind: String
            var at: Date
            @Nullable var detail: String?
        }

        var tenant: TenantView
        var migrations: [Migration]
        var events: [Event]

        enum CodingKeys: String, CodingKey { case migrations, events }

        func encode(to encoder: any Encoder) throws {
            try tenant.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(migrations, forKey: .migrations)
            try container.encode(events, forKey: .events)
        }
    }

    func run() async throws {
        guard events >= 0 else { throw UsageError("--events must be 0 or more") }
        let slug = try TenantSlug(slug)
        let context = try CommandContext(options)
        let current = try? context.currentLevel()
        let details = try await context.withTenancy(needsMigrations: false) { tenancy in
            guard let tenant = try await tenancy.tenant(slug.rawValue) else { throw TenancyError(code: .tenantNotFound, message: "no tenant \"\(slug)\"; list them with tenantctl list", slug: slug.rawValue) }
            let history = try await tenancy.migrationHistory(for: slug.rawValue)
            let events = try await tenancy.registry.events(for: slug, limit: max(1, self.events))
            return Details(
                tenant: TenantView(tenant, current: current),
                migrations: history.map { .init(filename: $0.filename, checksum: $0.checksum, appliedAt: $0.appliedAt, executionTimeMs: $0.executionTimeMilliseconds) },
                events: events.map { .init(kind: $0.kind.rawValue, at: $0.at, detail: $0.detail) })
        }
        context.output.emit(details) {
            let tenant = details.tenant
            var summary = TextTable("field", "value")
            summary.add("slug", tenant.slug)
            summary.add("name", tenant.displayName ?? "-")
            summary.add("schema", tenant.schema)
            summary.add("placement", tenant.placement)
            summary.add("status", tenant.status)
            summary.add("migration", (tenant.migrationLevel ?? "-") + (tenant.upToDate ? "" : " (behind)"))
            summary.add("created", Output.format(tenant.createdAt))
            summary.add("updated", Output.format(tenant.updatedAt))
            if let error = tenant.lastError { summary.add("last error", error) }
            var migrations = TextTable("migration", "applied", "took")
            for migration in details.migrations {
                migrations.add(migration.filename, Output.format(migration.appliedAt), Output.format(milliseconds: migration.executionTimeMs))
            }
            var events = TextTable("event", "at", "detail")
            for event in details.events { events.add(event.kind, Output.format(event.at), event.detail ?? "") }
            return [summary.render(), migrations.render(), events.render()].joined(separator: "\n\n")
        }
    }
}
