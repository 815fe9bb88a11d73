import Foundation
import SchemaDB
import Tenancy

/// An optional that `--json` prints as `null` when absent, instead of leaving the key out.
@propertyWrapper
struct Nullable<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }
}

extension Nullable: Sendable where Value: Sendable {}

/// A tenant as `--json` prints it.
struct TenantView: Encodable {
    var slug: String
    @Nullable var displayName: String?
    var schema: String
    var status: String
    var placement: String
    @Nullable var migrationLevel: String?
    var upToDate: Bool
    var createdAt: Date
    var updatedAt: Date
    @Nullable var lastError: String?

    init(_ tenant: Tenant, current: MigrationLevel?) {
        slug = tenant.slug.rawValue
        displayName = tenant.displayName
        schema = tenant.schema
        status = tenant.state.rawValue
        placement = tenant.placement
        migrationLevel = tenant.migrationLevel?.lastFile
        upToDate = tenant.migrationLevel == current
        createdAt = tenant.createdAt
        updatedAt = tenant.updatedAt
        lastError = tenant.lastError
    }
}

/// One tenant of a fleet run as `--json` prints it.
struct FleetItemView: Encodable {
    @Nullable var slug: String?
    var schema: String
    var status: String
    var applied: [String]
    @Nullable var error: String?
    var attempts: Int
    @Nullable var durationMs: Int?

    init(_ item: FleetRunItem) {
        slug = item.slug
        schema = item.schema
        status = item.status.rawValue
        applied = item.filesApplied
        error = item.error
        attempts = item.attempts
        durationMs = item.durationMilliseconds
    }
}

/// A fleet run as `--json` prints it.
struct FleetRunView: Encodable {
    var runId: Int64
    var status: String
    var startedAt: Date
    @Nullable var finishedAt: Date?
    @Nullable var targetMigration: String?
    @Nullable var error: String?
    var total: Int
    var succeeded: Int
    var failed: Int
    var skipped: Int
    var pending: Int
    var running: Int
    var tenants: [FleetItemView]?

    init(_ run: FleetRun, items: [FleetRunItem]? = nil) {
        runId = run.id
        status = run.status.rawValue
        startedAt = run.startedAt
        finishedAt = run.finishedAt
        targetMigration = run.target?.lastFile
        error = run.error
        total = run.counts.total
        succeeded = run.counts.succeeded
        failed = run.counts.failed
        skipped = run.counts.skipped
        pending = run.counts.pending
        running = run.counts.running
        tenants = items?.map(FleetItemView.init)
    }
}

/// The table of a fleet run's items.
func itemTable(_ items: [FleetRunItem]) -> String {
    var table = TextTable("tenant", "status", "attempts", "duration", "applied", "error")
    for item in items {
        table.add(item.slug ?? "(spare) \(item.schema)", item.status.rawValue, "\(item.attempts)",
                  Output.format(milliseconds: item.durationMilliseconds), item.filesApplied.joined(separator: ", "), item.error ?? "")
    }
    return table.render()
}

/// One line summing up a run.
func runSummary(_ run: FleetRun) -> String {
    let counts = run.counts
    var line = "run \(run.id) \(run.status.rawValue): \(counts.succeeded) migrated, \(counts.skipped) up to date or skipped, \(counts.failed) failed, \(counts.pending + counts.running) pending"
    if let error = run.error { line += " (\(error))" }
    return line
}
