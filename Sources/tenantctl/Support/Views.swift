import Foundation
import SchemaDB
import Tenancy

/// A tenant as `--json` prints it. Absent values are `null`, never missing keys.
struct TenantView: Encodable {
    var slug: String
    var displayName: String?
    var schema: String
    var status: String
    var placement: String
    var migrationLevel: String?
    var upToDate: Bool
    var createdAt: Date
    var updatedAt: Date
    var lastError: String?

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

    enum CodingKeys: String, CodingKey {
        case slug, displayName, schema, status, placement, migrationLevel, upToDate, createdAt, updatedAt, lastError
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(slug, forKey: .slug)
        try container.encode(displayName, forKey: .displayName)
        try container.encode(schema, forKey: .schema)
        try container.encode(status, forKey: .status)
        try container.encode(placement, forKey: .placement)
        try container.encode(migrationLevel, forKey: .migrationLevel)
        try container.encode(upToDate, forKey: .upToDate)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(updatedAt, forKey: .updatedAt)
        try container.encode(lastError, forKey: .lastError)
    }
}

/// One tenant of a fleet run as `--json` prints it.
struct FleetItemView: Encodable {
    var slug: String?
    var schema: String
    var status: String
    var applied: [String]
    var error: String?
    var attempts: Int
    var durationMs: Int?

    init(_ item: FleetRunItem) {
        slug = item.slug
        schema = item.schema
        status = item.status.rawValue
        applied = item.filesApplied
        error = item.error
        attempts = item.attempts
        durationMs = item.durationMilliseconds
    }

    enum CodingKeys: String, CodingKey {
        case slug, schema, status, applied, error, attempts, durationMs
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(slug, forKey: .slug)
        try container.encode(schema, forKey: .schema)
        try container.encode(status, forKey: .status)
        try container.encode(applied, forKey: .applied)
        try container.encode(error, forKey: .error)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(durationMs, forKey: .durationMs)
    }
}

/// A fleet run as `--json` prints it.
struct FleetRunView: Encodable {
    var runId: Int64
    var status: String
    var startedAt: Date
    var finishedAt: Date?
    var targetMigration: String?
    var error: String?
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

    enum CodingKeys: String, CodingKey {
        case runId, status, startedAt, finishedAt, targetMigration, error, total, succeeded, failed, skipped, pending, running, tenants
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(runId, forKey: .runId)
        try container.encode(status, forKey: .status)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(finishedAt, forKey: .finishedAt)
        try container.encode(targetMigration, forKey: .targetMigration)
        try container.encode(error, forKey: .error)
        for (key, value) in [(CodingKeys.total, total), (.succeeded, succeeded), (.failed, failed), (.skipped, skipped), (.pending, pending), (.running, running)] {
            try container.encode(value, forKey: key)
        }
        try container.encodeIfPresent(tenants, forKey: .tenants)
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
