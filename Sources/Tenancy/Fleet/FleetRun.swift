public import Foundation

/// One fleet migration run as the registry's ledger records it.
public struct FleetRun: Sendable, Hashable, Codable {
    /// Where a run is.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Migrating, or its process died; a run that starts later marks it `interrupted`.
        case running
        /// Every tenant succeeded or had nothing to apply.
        case completed
        /// Every tenant was tried and some failed. Resuming retries the failed ones.
        case completedWithFailures = "completed_with_failures"
        /// Stopped by the canary or by `maxFailures`; the tenants not started are still pending.
        case aborted
        /// Stopped by a signal, a cancellation or a crash; the tenants not started are pending.
        case interrupted

        /// Whether resuming the run has anything to do.
        public var isResumable: Bool { self != .completed }
    }

    /// How many items are in each state.
    public struct Counts: Sendable, Hashable, Codable {
        /// Every item of the run.
        public var total = 0
        /// Items not started yet.
        public var pending = 0
        /// Items being migrated, or left running by a process that died.
        public var running = 0
        /// Items with files applied.
        public var succeeded = 0
        /// Items whose migration failed and was rolled back.
        public var failed = 0
        /// Items with nothing to do.
        public var skipped = 0

        public init() {}
    }

    /// The run's id; pass it to ``FleetMigrator/resume(runID:options:stop:progress:)``.
    public var id: Int64
    public var status: Status
    public var startedAt: Date
    /// When it last finished; `nil` while running.
    public var finishedAt: Date?
    /// The level the run brings tenants to: the last file and the set's checksum.
    public var target: MigrationLevel?
    /// The options it was started with, as JSON.
    public var parameters: String?
    /// Why it was aborted or interrupted.
    public var error: String?
    /// Its items by state.
    public var counts: Counts
}

/// One tenant (or spare schema) of a fleet run.
public struct FleetRunItem: Sendable, Hashable, Codable {
    /// Where a tenant of a run is.
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        /// Not started yet.
        case pending
        /// Being migrated, or its process died while migrating it.
        case running
        /// Migrated: at least one file applied.
        case succeeded
        /// Its migration failed and was rolled back; the tenant is unchanged.
        case failed
        /// Nothing to do: already up to date, or no longer served (deleted) when its turn came.
        case skipped
    }

    /// The registry id of the tenant or spare.
    public var tenantID: Int64
    /// The tenant's slug now; `nil` for a spare schema.
    public var slug: String?
    public var schema: String
    /// Its place in the run's order.
    public var position: Int
    public var status: Status
    /// How many times it was started, across resumes.
    public var attempts: Int
    /// Why it failed or was skipped.
    public var error: String?
    /// How long its last attempt took.
    public var durationMilliseconds: Int?
    /// The files its last attempt applied.
    public var filesApplied: [String]
    public var startedAt: Date?
    public var finishedAt: Date?
}

/// What a fleet run did: the run and every item, in order.
public struct FleetReport: Sendable, Hashable, Codable {
    public var run: FleetRun
    public var items: [FleetRunItem]

    /// Items that failed.
    public var failures: [FleetRunItem] { items.filter { $0.status == .failed } }
}

/// Where a fleet run stands, reported after each tenant finishes.
public struct FleetProgress: Sendable, Hashable {
    public var runID: Int64
    /// Tenants in this pass (a resume counts only the ones it retries).
    public var total: Int
    public var succeeded: Int
    public var failed: Int
    public var skipped: Int
    /// The item that just finished.
    public var latest: FleetRunItem?
    /// Time since the pass started.
    public var elapsed: Duration

    /// Tenants finished in this pass.
    public var finished: Int { succeeded + failed + skipped }
}

/// What a fleet run would do, computed without changing anything.
public struct FleetPlan: Sendable, Hashable, Codable {
    /// One tenant's pending work.
    public struct Entry: Sendable, Hashable, Codable {
        /// The tenant's slug; `nil` for a spare schema.
        public var slug: String?
        public var schema: String
        /// The placement the schema lives in.
        public var placement: String
        public var state: TenantState
        /// Files that would run, in order.
        public var pending: [String]
        /// Why the tenant cannot be migrated as it is (a changed or missing file, no schema).
        public var problem: String?
    }

    /// The level every tenant would reach.
    public var target: MigrationLevel?
    public var entries: [Entry]

    /// Entries with files to apply.
    public var behind: [Entry] { entries.filter { !$0.pending.isEmpty } }
    /// Entries that cannot be migrated as they are.
    public var blocked: [Entry] { entries.filter { $0.problem != nil } }
}

extension FleetRun.Counts {
    /// Adds `count` items in `status`.
    mutating func add(_ status: FleetRunItem.Status, _ count: Int) {
        total += count
        switch status {
        case .pending: pending += count
        case .running: running += count
        case .succeeded: succeeded += count
        case .failed: failed += count
        case .skipped: skipped += count
        }
    }
}
