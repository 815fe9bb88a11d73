import Foundation
import Logging
import Metrics
import SchemaDB
import ServiceLifecycle
import Synchronization
import Tracing

/// Migrates every tenant (or a chosen few) to the current migration set, with bounded
/// concurrency and a durable ledger in the registry.
///
/// Each tenant migrates in one transaction under its own (schema, module) advisory lock, with a
/// lock timeout so one busy tenant cannot stall the fleet. A fleet lock in the default
/// placement's database keeps a second run over the same fleet (schema prefix and module) out.
/// Tenants on several placements migrate side by side, each placement within its own
/// concurrency: a placement that is down fails only its own tenants, at once, and a resume
/// picks them up. Failed tenants are rolled back and the run goes on, unless
/// ``Options/maxFailures`` is exceeded or a canary fails. A run that stops early (a signal, a
/// crash, an abort) is resumed with ``resume(runID:options:stop:progress:)``, which retries only
/// its failed and unstarted tenants.
public struct FleetMigrator: Sendable {
    /// Which tenants a run covers.
    public enum Selection: Sendable, Hashable {
        /// Every active, suspended and moving tenant, then every spare schema (so that
        /// claiming one after a release needs no migration).
        case all
        /// These tenants, in this order. Each must be active or suspended.
        case tenants([TenantSlug])
    }

    /// Fleet run settings. Every one has a default.
    public struct Options: Sendable, Hashable {
        /// Tenants migrated at once, over every placement. Defaults to 4; on the default
        /// placement never more than its pool's connections minus the one holding the fleet lock.
        public var concurrency: Int = 4
        /// Tenants migrated at once on one placement; `nil` (the default) allows
        /// ``concurrency`` on each. Never more than the placement pool's connections.
        public var concurrencyPerPlacement: Int? = nil
        /// Migrate the first `canary` tenants one at a time and abort the run if any fails.
        /// Defaults to 0 (no canary).
        public var canary: Int = 0
        /// Abort the run once more than this many tenants failed. `nil` (the default) goes on
        /// to the end.
        public var maxFailures: Int? = nil
        /// The longest wait for each tenant's migration lock and table locks. Defaults to 10 s.
        public var tenantLockTimeout: Duration = .seconds(10)
        /// How long to wait for another fleet run to finish. `nil` (the default) fails at once
        /// with ``TenancyError/Code/fleetLocked``.
        public var fleetLockWait: Duration? = nil

        public init() {}
    }

    private let placements: PlacementPools
    private let registry: TenantRegistry
    private let migrations: TenantMigrations?
    private let schemaPrefix: String
    private let ready: @Sendable () async throws -> Void
    private let logger: Logger
    private let migratedCounter = Counter(label: "tenancy_fleet_tenants_migrated")
    private let failedCounter = Counter(label: "tenancy_fleet_tenants_failed")
    private let tenantTimer = Metrics.Timer(label: "tenancy_fleet_tenant_duration")

    /// The default placement's pool: the fleet lock's.
    private var pool: DatabasePool { placements.primary }

    init(placements: PlacementPools, registry: TenantRegistry, migrations: TenantMigrations?, schemaPrefix: String, logger: Logger,
         ready: @escaping @Sendable () async throws -> Void) {
        self.placements = placements
        self.registry = registry
        self.migrations = migrations
        self.schemaPrefix = schemaPrefix
        self.logger = logger
        self.ready = ready
    }

    private func requireMigrations() throws -> TenantMigrations {
        guard let migrations else {
            throw TenancyError(code: .migrationSetUnavailable, message: "a fleet run needs the tenant migration set, and none was loaded; set the migrations directory")
        }
        return migrations
    }

    // MARK: - Plan

    /// Which files a run would apply to each tenant, read from each schema's tracking table,
    /// without changing anything.
    public func plan(_ selection: Selection, concurrency: Int = 4) async throws -> FleetPlan {
        let migrations = try requireMigrations()
        let candidates = try await candidates(selection)
        let width = max(1, min(concurrency, pool.connectionLimit ?? concurrency))
        var entries = try await forEachConcurrently(candidates.enumerated(), width: width) { (index, candidate) in
            (index, await self.planEntry(candidate, migrations: migrations))
        }
        entries.sort { $0.0 < $1.0 }
        return FleetPlan(target: migrations.currentLevel, entries: entries.map(\.1))
    }

    private func planEntry(_ candidate: TenantRecord, migrations: TenantMigrations) async -> FleetPlan.Entry {
        var entry = FleetPlan.Entry(slug: candidate.slug, schema: candidate.schema, placement: candidate.placement, state: candidate.state, pending: [], problem: nil)
        do {
            let db = try await placements.pool(for: candidate.placement).database(schema: try SQLIdentifier(candidate.schema))
            guard try await db.schemaExists() else {
                entry.problem = "its schema does not exist; run doctor"
                return entry
            }
            let status = try await migrations.migrator(for: db).status()
            entry.pending = status.pending
            var problems: [String] = []
            if !status.changed.isEmpty { problems.append("changed after they were applied: " + status.changed.map(\.filename).joined(separator: ", ")) }
            if !status.missing.isEmpty { problems.append("applied but missing from the directory: " + status.missing.joined(separator: ", ")) }
            if !status.outOfOrder.isEmpty { problems.append("new files sorting before applied ones: " + status.outOfOrder.joined(separator: ", ")) }
            entry.problem = problems.isEmpty ? nil : problems.joined(separator: "; ")
        } catch {
            entry.problem = "\(error)"
        }
        return entry
    }

    // MARK: - Run

    /// Starts a run over `selection` and migrates it.
    /// - Parameters:
    ///   - stop: Stops the run between tenants when asked.
    ///   - progress: Called after each tenant finishes, from the task that migrated it.
    /// - Returns: The run and its items. Failed tenants do not make it throw: see
    ///   ``FleetRun/status`` and ``FleetReport/failures``.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/fleetLocked`` when another run
    ///   holds the fleet lock, or for an unknown or unmigratable tenant in `selection`, before
    ///   anything is written.
    public func run(_ selection: Selection, options: Options = .init(), stop: FleetStop = FleetStop(), progress: (@Sendable (FleetProgress) -> Void)? = nil) async throws -> FleetReport {
        let migrations = try requireMigrations()
        let candidates = try await candidates(selection)
        let width = try await width(for: options)
        let parameters = Self.parameters(selection, options)
        return try await shielded(stop) {
            try await self.withFleetLock(wait: options.fleetLockWait, stop: stop) {
                let runID = try await self.registry.store.beginFleetRun(tenantIDs: candidates.map(\.id), target: migrations.currentLevel, parameters: parameters)
                self.logger.info("fleet run started", metadata: [TenancyLoggingKeys.fleetRun: "\(runID)", "tenant.count": "\(candidates.count)"])
                return try await self.traced(runID: runID, tenants: candidates.count) {
                    try await self.drive(runID: runID, tenantIDs: candidates.map(\.id), width: width, options: options, migrations: migrations, stop: stop, progress: progress)
                }
            }
        }
    }

    /// Resumes run `runID`: its failed tenants, those left running by a process that died, and
    /// those never started are migrated; the others are left as they are.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/fleetRunNotFound`` or
    ///   ``TenancyError/Code/fleetLocked``.
    public func resume(runID: Int64, options: Options = .init(), stop: FleetStop = FleetStop(), progress: (@Sendable (FleetProgress) -> Void)? = nil) async throws -> FleetReport {
        let migrations = try requireMigrations()
        try await ready()
        guard let run = try await registry.fleetRun(id: runID) else {
            throw TenancyError(code: .fleetRunNotFound, message: "no fleet run \(runID); list the runs with `tenantctl runs`")
        }
        let width = try await width(for: options)
        guard run.status.isResumable else { return try await report(runID) }
        return try await shielded(stop) {
            try await self.withFleetLock(wait: options.fleetLockWait, stop: stop) {
                let tenantIDs = try await self.registry.store.reopenFleetRun(id: runID, target: migrations.currentLevel)
                self.logger.info("fleet run resumed", metadata: [TenancyLoggingKeys.fleetRun: "\(runID)", "tenant.count": "\(tenantIDs.count)"])
                return try await self.traced(runID: runID, tenants: tenantIDs.count) {
                    try await self.drive(runID: runID, tenantIDs: tenantIDs, width: width, options: options, migrations: migrations, stop: stop, progress: progress)
                }
            }
        }
    }

    // MARK: - Steps

    private func candidates(_ selection: Selection) async throws -> [TenantRecord] {
        try await ready()
        let store = registry.store
        switch selection {
        case .all:
            // A moving tenant is recorded failed, and a resume once the move ended migrates it.
            return try await store.records(in: [.active, .suspended, .spare, .moving])
        case .tenants(let slugs):
            var seen = Set<TenantSlug>()
            var candidates: [TenantRecord] = []
            for slug in slugs where seen.insert(slug).inserted {
                guard let candidate = try await store.record(slug: slug.rawValue) else { throw TenancyError.notFound(slug.rawValue) }
                guard candidate.state == .active || candidate.state == .suspended else {
                    let gone = candidate.state == .deleted || candidate.state == .deleting
                    throw TenancyError(code: gone ? .tenantDeleted : .illegalTransition,
                                       message: "tenant \"\(slug)\" is \(candidate.state.rawValue) and has no schema to migrate; leave it out", slug: slug.rawValue)
                }
                candidates.append(candidate)
            }
            return candidates
        }
    }

    /// Concurrency within the pool, leaving one connection for the fleet lock, and within what
    /// the server can take now.
    private func width(for options: Options) async throws -> Int {
        let width = try poolWidth(for: options)
        let allowed = await pool.concurrencyTheServerAllows(width + 1) - 1
        guard allowed < width else { return width }
        logger.warning("the server takes only \(allowed + 1) more connections; migrating \(max(1, allowed)) tenants at a time instead of \(width)")
        return max(1, allowed)
    }

    private func poolWidth(for options: Options) throws -> Int {
        guard options.concurrency >= 1 else {
            throw TenancyError(code: .invalidArgument, message: "fleet concurrency must be at least 1, not \(options.concurrency)")
        }
        guard let limit = pool.connectionLimit else { return options.concurrency }
        guard limit >= 2 else {
            throw TenancyError(code: .invalidArgument, message: "a fleet run needs a pool of at least 2 connections (one holds the fleet lock); this one has \(limit)")
        }
        return min(options.concurrency, limit - 1)
    }

    /// Runs one pass of run `runID` in a `tenancy.fleet.run` span.
    private func traced(runID: Int64, tenants: Int, _ body: () async throws -> FleetReport) async throws -> FleetReport {
        try await withSpan("tenancy.fleet.run") { span in
            span.attributes["tenancy.fleet.run_id"] = Int(runID)
            span.attributes["tenancy.fleet.tenants"] = tenants
            let report = try await body()
            span.attributes["tenancy.fleet.status"] = report.run.status.rawValue
            span.attributes["tenancy.fleet.failed"] = report.run.counts.failed
            return report
        }
    }

    /// The counts of one pass over a run's pending tenants.
    private struct Tally {
        var succeeded = 0
        var failed = 0
        var skipped = 0
        var abortReason: String?
    }

    private func drive(runID: Int64, tenantIDs: [Int64], width: Int, options: Options, migrations: TenantMigrations, stop: FleetStop, progress: (@Sendable (FleetProgress) -> Void)?) async throws -> FleetReport {
        let tally = Mutex(Tally())
        let outages = PlacementOutages()
        let start = ContinuousClock.now
        let migrate: @Sendable (Int64) async throws -> Void = { id in
            guard !stop.isStopped, tally.withLock({ $0.abortReason == nil }) else { return }
            let item = try await self.migrate(tenantID: id, runID: runID, options: options, migrations: migrations, stop: stop, outages: outages)
            let snapshot = tally.withLock { tally in
                switch item.status {
                case .succeeded: tally.succeeded += 1
                case .skipped: tally.skipped += 1
                case .failed:
                    tally.failed += 1
                    if let limit = options.maxFailures, tally.failed > limit, tally.abortReason == nil {
                        tally.abortReason = "more than \(limit) tenants failed"
                    }
                case .pending, .running: break
                }
                return tally
            }
            progress?(FleetProgress(runID: runID, total: tenantIDs.count, succeeded: snapshot.succeeded, failed: snapshot.failed,
                                    skipped: snapshot.skipped, latest: item, elapsed: ContinuousClock.now - start))
        }
        do {
            let canaries = tenantIDs.prefix(max(0, options.canary))
            for id in canaries {
                try await migrate(id)
                if tally.withLock({ $0.failed > 0 && $0.abortReason == nil }) {
                    tally.withLock { $0.abortReason = "a canary tenant failed" }
                }
            }
            try await migrateByPlacement(Array(tenantIDs.dropFirst(canaries.count)), width: width, options: options, migrate)
        } catch {
            // The registry could not record a tenant: the run cannot go on without its ledger.
            try? await registry.store.finishFleetRun(id: runID, status: .interrupted, error: "\(error)")
            throw TenancyError(
                code: .fleetRunInterrupted,
                message: "fleet run \(runID) stopped: \(error); tenants it left running are retried by a resume; once the database and registry are reachable, resume it with: tenantctl migrate --resume \(runID)",
                underlying: error)
        }
        let final = tally.withLock { $0 }
        let status: FleetRun.Status
        let reason: String?
        if let abort = final.abortReason {
            (status, reason) = (.aborted, abort)
        } else if let stopped = stop.stopReason {
            (status, reason) = (.interrupted, stopped)
        } else {
            (status, reason) = (final.failed > 0 ? .completedWithFailures : .completed, nil)
        }
        try await registry.store.finishFleetRun(id: runID, status: status, error: reason)
        logger.info("fleet run finished", metadata: [
            TenancyLoggingKeys.fleetRun: "\(runID)", "fleet.status": "\(status.rawValue)",
            "fleet.succeeded": "\(final.succeeded)", "fleet.failed": "\(final.failed)", "fleet.skipped": "\(final.skipped)",
        ])
        return try await report(runID)
    }

    /// Runs `migrate` for every tenant, the tenants of each placement side by side with the
    /// others': within `width` in total, and within the placement's own concurrency. After a
    /// registry failure no more tenants of that placement start, the ones running finish, and
    /// the failure is thrown.
    private func migrateByPlacement(_ tenantIDs: [Int64], width: Int, options: Options, _ migrate: @escaping @Sendable (Int64) async throws -> Void) async throws {
        let placementOf = Dictionary(try await registry.store.records(in: nil).map { ($0.id, $0.placement) }, uniquingKeysWith: { first, _ in first })
        var groups: [String: [Int64]] = [:]
        var order: [String] = []
        for id in tenantIDs {
            let placement = placementOf[id] ?? Placement.defaultName
            if groups[placement] == nil { order.append(placement) }
            groups[placement, default: []].append(id)
        }
        let gate = AsyncGate(width: width)
        var widths: [String: Int] = [:]
        for placement in order { widths[placement] = await placementWidth(placement, options: options, total: width, shares: order.count) }
        let failures = await withTaskGroup(of: (any Error)?.self) { group in
            for placement in order {
                let (ids, placementWidth) = (groups[placement] ?? [], widths[placement] ?? 1)
                group.addTask {
                    do {
                        _ = try await forEachConcurrently(ids, width: placementWidth) { id in try await gate.withPermit { try await migrate(id) } }
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            var failures: [any Error] = []
            for await failure in group { if let failure { failures.append(failure) } }
            return failures
        }
        if let first = failures.first { throw first }
    }

    /// How many tenants of `placement` migrate at once: the per-placement concurrency (by
    /// default an even share of the total, so that a slow placement cannot hold every slot),
    /// within its pool (less the fleet lock's connection on the default placement).
    private func placementWidth(_ placement: String, options: Options, total: Int, shares: Int) async -> Int {
        let wanted = min(total, options.concurrencyPerPlacement ?? max(1, (total + shares - 1) / shares))
        guard placement != Placement.defaultName else { return wanted }
        // A placement that cannot be opened fails its tenants at once, one at a time.
        guard let pool = try? await placements.pool(for: placement) else { return 1 }
        return max(1, min(wanted, pool.connectionLimit ?? wanted))
    }

    /// Migrates one tenant and records the outcome. Database failures become a failed item;
    /// registry failures are thrown.
    private func migrate(tenantID: Int64, runID: Int64, options: Options, migrations: TenantMigrations, stop: FleetStop, outages: PlacementOutages) async throws -> FleetRunItem {
        try await withSpan("tenancy.fleet.migrate") { span in
            let item = try await migrateUntraced(tenantID: tenantID, runID: runID, options: options, migrations: migrations, stop: stop, outages: outages)
            if let slug = item.slug { span.attributes["tenant.slug"] = slug }
            span.attributes["db.namespace"] = item.schema
            span.attributes["tenancy.fleet.item_status"] = item.status.rawValue
            span.attributes["tenancy.fleet.files_applied"] = item.filesApplied.count
            if item.status == .failed { span.setStatus(SpanStatus(code: .error)) }
            return item
        }
    }

    private func migrateUntraced(tenantID: Int64, runID: Int64, options: Options, migrations: TenantMigrations, stop: FleetStop, outages: PlacementOutages) async throws -> FleetRunItem {
        let start = ContinuousClock.now
        var item = FleetRunItem(tenantID: tenantID, slug: nil, schema: "", position: 0, status: .skipped, attempts: 0,
                                error: nil, durationMilliseconds: nil, filesApplied: [], startedAt: Date(), finishedAt: nil)
        var level: MigrationLevel? = nil
        let started = try await registry.store.startFleetItem(runID: runID, tenantID: tenantID)
        (item.position, item.attempts) = (started.position, started.attempts)
        if let tenant = started.tenant {
            (item.slug, item.schema) = (tenant.slug, tenant.schema)
            if tenant.state == .moving {
                // Its schema is being copied; the run retries it on resume, once the move ended.
                item.status = .failed
                item.error = "the tenant is moving to placement \"\(tenant.move?.target ?? "?")\"; resume this run once the move ends"
            } else if let outage = outages.outage(of: tenant.placement) {
                item.status = .failed
                item.error = outage
            } else if tenant.state.hasSchema {
                do {
                    let db = try await placements.pool(for: tenant.placement).database(schema: try SQLIdentifier(tenant.schema))
                    let report = try await migrations.migrator(for: db, lockTimeout: options.tenantLockTimeout).apply()
                    item.filesApplied = report.applied.map(\.filename)
                    item.status = item.filesApplied.isEmpty ? .skipped : .succeeded
                    if let current = migrations.currentLevel, tenant.level != current || !item.filesApplied.isEmpty { level = current }
                } catch let error as SchemaDBError {
                    item.status = .failed
                    item.error = error.message + (error.hint.map { "; hint: \($0)" } ?? "")
                    if error.code == .connectionFailed {
                        if tenant.placement == Placement.defaultName {
                            // Not this tenant's fault: the server went away. The rest wait for a resume.
                            stop.stop(reason: "the connection to the database was lost")
                        } else {
                            // Only this placement's tenants are affected; they fail at once from now on.
                            item.error = "placement \"\(tenant.placement)\" went away during the run: \(error.message)"
                            outages.record(tenant.placement, item.error ?? "")
                        }
                    }
                } catch let error as TenancyError where [.placementUnreachable, .placementMismatch, .placementNotFound].contains(error.code) {
                    item.status = .failed
                    item.error = error.message
                    outages.record(tenant.placement, error.message)
                } catch {
                    item.status = .failed
                    item.error = "\(error)"
                }
            } else {
                item.error = "the tenant is \(tenant.state.rawValue)"
            }
        } else {
            item.error = "the tenant is no longer in the registry"
        }
        let elapsed = ContinuousClock.now - start
        item.durationMilliseconds = Int(elapsed.wholeMilliseconds)
        item.finishedAt = Date()
        try await registry.store.finishFleetItem(runID: runID, tenantID: tenantID, status: item.status, error: item.error,
                                           durationMilliseconds: item.durationMilliseconds ?? 0, filesApplied: item.filesApplied, level: level)
        tenantTimer.recordNanoseconds(elapsed.wholeNanoseconds)
        switch item.status {
        case .succeeded: migratedCounter.increment()
        case .failed:
            failedCounter.increment()
            logger.info("tenant migration failed", metadata: [TenancyLoggingKeys.tenantSlug: "\(item.slug ?? "")", TenancyLoggingKeys.tenantSchema: "\(item.schema)", "error": "\(item.error ?? "")"])
        default: break
        }
        return item
    }

    private func report(_ runID: Int64) async throws -> FleetReport {
        guard let run = try await registry.fleetRun(id: runID) else {
            throw TenancyError(code: .fleetRunNotFound, message: "fleet run \(runID) is no longer in the registry")
        }
        return FleetReport(run: run, items: try await registry.fleetRunItems(runID: runID))
    }

    // MARK: - Locking and cancellation

    /// Holds the fleet lock, a session advisory lock on one pooled connection, around `body`.
    ///
    /// While `body` runs, the lock's session is checked every second: when its connection ended
    /// (the backend was terminated, the server restarted) another run may already hold the
    /// lock, so the run is stopped between tenants and recorded as interrupted.
    private func withFleetLock<T: Sendable>(wait: Duration?, stop: FleetStop, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let key = try requireMigrations().fleetLockKey(schemaPrefix: schemaPrefix)
        return try await pool.database(schema: nil).withConnection { session in
            let start = ContinuousClock.now
            let deadline = wait.map { start + $0 }
            var pause = Duration.milliseconds(50)
            var nextReport = start
            while try await session.fetchValue("SELECT pg_try_advisory_lock($1)", key, as: Bool.self) != true {
                let now = ContinuousClock.now
                guard let deadline, now < deadline else {
                    throw TenancyError(
                        code: .fleetLocked,
                        message: "another fleet migration is running against this database; wait for it to finish" + (wait == nil ? " or ask to wait for it" : ", or wait longer"))
                }
                if now >= nextReport {
                    await logFleetLockWait(waited: now - start, limit: deadline - start)
                    nextReport = now + Self.fleetLockWaitReportInterval
                }
                try await Task.sleep(for: min(pause, deadline - ContinuousClock.now))
                pause = min(pause * 2, .seconds(1))
            }
            do {
                let result = try await withThrowingTaskGroup(of: T?.self) { group in
                    group.addTask {
                        try await self.watchFleetLock(key, on: session, stop: stop)
                        return nil
                    }
                    group.addTask { try await body() }
                    while let next = try await group.next() {
                        if let result = next {
                            group.cancelAll()
                            return result
                        }
                    }
                    throw CancellationError()
                }
                _ = try? await session.fetchAll("SELECT pg_advisory_unlock($1)", key)
                return result
            } catch {
                _ = try? await session.fetchAll("SELECT pg_advisory_unlock($1)", key)
                throw error
            }
        }
    }

    /// How often a wait for the fleet lock is logged.
    static let fleetLockWaitReportInterval = Duration.seconds(5)

    /// Logs a wait for the fleet lock, with the run holding it as the ledger shows it.
    private func logFleetLockWait(waited: Duration, limit: Duration) async {
        var metadata: Logger.Metadata = ["fleet.waited_s": "\(waited.wholeMilliseconds / 1000)", "fleet.wait_limit_s": "\(limit.wholeMilliseconds / 1000)"]
        if let holder = try? await registry.store.fleetRuns(limit: 5).first(where: { $0.status == .running }) {
            metadata[TenancyLoggingKeys.fleetRun] = "\(holder.id)"
            metadata["fleet.done"] = "\(holder.counts.total - holder.counts.pending - holder.counts.running)/\(holder.counts.total)"
        }
        logger.info("waiting for another process's fleet migration to finish", metadata: metadata)
    }

    /// Returns when the task is cancelled; stops the run when the fleet lock is no longer held.
    private func watchFleetLock(_ key: Int64, on session: SchemaDatabase, stop: FleetStop) async throws {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(1))
            } catch {
                return
            }
            let held: Bool
            do {
                held = try await session.fetchValue(
                    """
                    SELECT EXISTS (SELECT FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted AND objsubid = 1
                                   AND classid = (($1::bigint >> 32) & 4294967295)::oid AND objid = ($1::bigint & 4294967295)::oid)
                    """, key, as: Bool.self) == true
            } catch is CancellationError {
                return
            } catch {
                held = false
            }
            guard held else {
                logger.warning("the fleet lock was lost: its connection ended; stopping the run between tenants")
                stop.stop(reason: "the fleet lock was lost (its connection ended, or the server restarted)")
                return
            }
        }
    }

    /// Runs `body` in its own task, so that cancellation or a graceful shutdown stops the run
    /// between tenants instead of interrupting the ones in flight.
    private func shielded<T: Sendable>(_ stop: FleetStop, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await body() }
        return try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await task.value
            } onGracefulShutdown: {
                stop.stop(reason: "the service is shutting down")
            }
        } onCancel: {
            stop.stop(reason: "the task was cancelled")
        }
    }

    private static func parameters(_ selection: Selection, _ options: Options) -> String {
        struct Parameters: Encodable {
            var tenants: [String]?
            var concurrency: Int
            var canary: Int
            var maxFailures: Int?
            var tenantLockTimeoutMs: Int64
        }
        let tenants: [String]? = if case .tenants(let slugs) = selection { slugs.map(\.rawValue) } else { nil }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = .sortedKeys
        let value = Parameters(tenants: tenants, concurrency: options.concurrency, canary: options.canary, maxFailures: options.maxFailures,
                               tenantLockTimeoutMs: options.tenantLockTimeout.wholeMilliseconds)
        return String(decoding: (try? encoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// The placements found down during one fleet run: their remaining tenants fail at once, and
/// a resume retries them.
final class PlacementOutages: Sendable {
    private let outages = Mutex<[String: String]>([:])

    func record(_ placement: String, _ reason: String) {
        outages.withLock { if $0[placement] == nil { $0[placement] = reason } }
    }

    func outage(of placement: String) -> String? {
        outages.withLock { $0[placement] }
    }
}
