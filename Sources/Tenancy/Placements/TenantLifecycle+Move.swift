import Foundation
import Logging
import SchemaDB

/// How a tenant's schema is copied to another placement.
public enum MoveMode: String, Sendable, Hashable, Codable, CaseIterable {
    /// The tenant is served from its old placement while PostgreSQL's logical replication
    /// copies it, and refused only for the final catch-up, check and switch. The source
    /// server needs `wal_level = logical`, and the target a role that may create subscriptions.
    case online
    /// The tenant is refused while its tables are copied in one snapshot. Works on any server.
    case offline
}

/// What a move did.
public struct MoveReport: Sendable, Hashable, Codable {
    /// How a move ended.
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// The tenant now lives on the target placement.
        case moved
        /// The tenant was already there: nothing was done.
        case alreadyThere = "already_there"
        /// The move was rolled back: the tenant stays where it was.
        case rolledBack = "rolled_back"
    }

    /// The tenant as it now is.
    public var tenant: Tenant
    /// Where it was.
    public var source: String
    /// Where it was to go.
    public var target: String
    public var outcome: Outcome
    /// Tables copied.
    public var tables: Int
    /// Rows copied.
    public var rows: Int64
    /// How it was copied.
    public var mode: MoveMode
    /// How long writes to the tenant were held or refused: the whole move when offline, the
    /// final catch-up, check and switch when online.
    public var refusedMilliseconds: Int
    /// How long the move took.
    public var totalMilliseconds: Int
}

/// Where a move stops when a test asks it to, as a process killed right after that step would.
enum MoveStep: Sendable, Equatable, CaseIterable {
    /// The registry says `moving`.
    case markedMoving
    /// The copy is complete on the target (offline: committed; online: in sync with the
    /// source); the source is not frozen yet.
    case targetCommitted
    /// The source is frozen; the registry still names it.
    case sourceFrozen
}

struct MoveStopped: Error {
    var step: MoveStep
}

extension TenantLifecycle {
    /// The longest an online move waits for the initial copy of a tenant.
    static let onlineCopyTimeout = Duration.seconds(3600)
    /// The longest an online move holds writes while the target catches up with the source.
    static let catchUpTimeout = Duration.seconds(10)

    /// Moves a tenant's schema to placement `target`. The tenant is `moving`: locked against
    /// other changes, and (offline) refused by every process, or (online) served from its old
    /// placement while logical replication copies it. Then its tables are locked against
    /// writes, the copy is completed (offline: in one snapshot; online: the target catches up
    /// with the source's last write) and checked table by table (row count and a checksum of
    /// every row), the source is frozen (its tables refuse writes), and the registry switches
    /// the tenant to `target`.
    ///
    /// A move interrupted at any point is finished by calling this again (or
    /// ``resumeMove(_:)``), or rolled back with ``abortMove(_:)``: the copy is redone unless the
    /// source was frozen, and then the copy is checked again before the switch. At no time are
    /// two copies writable: the target is not routed to before the source is frozen.
    func move(_ slug: TenantSlug, to target: String, mode: MoveMode, stoppingAfter step: MoveStep? = nil) async throws -> MoveReport {
        let migrations = try requireMigrations()
        let start = ContinuousClock.now
        var record = try await record(slug)
        if record.state == .moving {
            guard record.move?.target == target else { throw TenancyError.moving(record) }
            return try await finishMove(record, migrations: migrations, start: start, stoppingAfter: step)
        }
        if record.placement == target {
            return MoveReport(tenant: try record.requireTenant(), source: target, target: target, outcome: .alreadyThere, tables: 0, rows: 0, mode: mode,
                              refusedMilliseconds: 0, totalMilliseconds: 0)
        }
        try Self.checkMove(record, to: .moving)
        _ = try await PlacementPolicy.choose(target, among: try await registry.store.placements(), counts: { [:] })
        let source = try await site(record.placement)
        let destination = try await site(target)
        let schema = try SQLIdentifier(record.schema)
        guard try await migrations.migrator(for: source.pool.database(schema: schema)).status().isUpToDate else {
            throw TenancyError(
                code: .migrationPending,
                message: "\(record.name) is not at this migration set; migrate it first (tenantctl migrate), so that its copy is created at the same level",
                slug: record.slug)
        }
        if mode == .online {
            if let problem = try await LogicalReplication.problem(replicating: schema, on: source.pool.database(schema: nil)) {
                throw TenancyError(code: .invalidArgument, message: "\(record.name) cannot be moved online: \(problem); move it offline", slug: record.slug)
            }
            _ = try await sourceConfiguration(record.placement)
        }
        if try await SchemaCopier.isFrozen(schema, on: destination.pool.database(schema: nil)) {
            // A frozen leftover of an earlier move away from the target: never served, dropped.
            try await destination.pool.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
            logger.info("dropped the frozen schema an earlier move left on the target", metadata: [TenancyLoggingKeys.tenantSchema: "\(schema.name)", "move.target": "\(target)"])
        } else if try await destination.pool.database(schema: schema).schemaExists() {
            throw TenancyError(
                code: .databaseFailed,
                message: "placement \"\(target)\" already has a schema named \(schema.name); nothing was moved, look at it with tenantctl doctor",
                slug: record.slug)
        }
        try await checkShape(of: schema, of: record, from: source.pool, to: destination.pool, migrations: migrations)
        record = try await write(record, TenantChange(
            state: .moving, move: .some(TenantMove(target: target, returnState: record.state, mode: mode)),
            event: .moveStarted, detail: "\(record.placement) → \(target), \(mode.rawValue)"))
        await changed([slug.rawValue])
        logger.info("tenant move started", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", "move.source": "\(record.placement)", "move.target": "\(target)"])
        if step == .markedMoving { throw MoveStopped(step: .markedMoving) }
        return try await finishMove(record, migrations: migrations, start: start, stoppingAfter: step)
    }

    /// Finishes the move of a `moving` tenant.
    /// - Throws: ``TenancyError/Code/illegalTransition`` when the tenant is not moving.
    func resumeMove(_ slug: TenantSlug) async throws -> MoveReport {
        let record = try await record(slug)
        guard record.state == .moving, let move = record.move else {
            throw TenancyError(code: .illegalTransition, message: "\(record.name) is \(record.state.rawValue), not moving; there is no move to resume", slug: record.slug)
        }
        return try await self.move(slug, to: move.target, mode: move.mode)
    }

    /// Rolls back the move of a `moving` tenant: the copy on the target is dropped, the source
    /// takes writes again, and the tenant is back in the state it was in, where it was.
    func abortMove(_ slug: TenantSlug) async throws -> MoveReport {
        let start = ContinuousClock.now
        let record = try await record(slug)
        guard record.state == .moving, let move = record.move else {
            throw TenancyError(code: .illegalTransition, message: "\(record.name) is \(record.state.rawValue), not moving; there is no move to roll back", slug: record.slug)
        }
        let source = try await site(record.placement)
        let schema = try SQLIdentifier(record.schema)
        return try await holdingMoveLock(record, on: source.pool) {
            let destination: Site?
            do {
                destination = try await site(move.target)
            } catch let error as TenancyError where [.placementUnreachable, .placementMismatch].contains(error.code) {
                destination = nil
                // The copy is never routed to; reconcile reports it on the target once it is back.
                logger.warning("the copy of a rolled-back move could not be dropped", metadata: [
                    TenancyLoggingKeys.tenantSlug: "\(slug)", "move.target": "\(move.target)", LoggingKeys.error: "\(error)",
                ])
            }
            if move.mode == .online {
                try await replication(of: schema).stop(target: destination?.pool.database(schema: nil), source: source.pool.database(schema: nil))
            }
            if let destination {
                try await destination.pool.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
            }
            if try await SchemaCopier.isFrozen(schema, on: source.pool.database(schema: nil)) {
                try await source.pool.database(schema: nil).withTransaction { tx in try await SchemaCopier.unfreeze(schema, in: tx) }
            }
            let back = try await write(record, TenantChange(state: move.returnState, move: .some(nil), event: .moveRolledBack, detail: "\(record.placement) → \(move.target)"))
            await changed([slug.rawValue])
            let elapsed = Int((ContinuousClock.now - start).wholeMilliseconds)
            return MoveReport(tenant: try back.requireTenant(), source: record.placement, target: move.target, outcome: .rolledBack, tables: 0, rows: 0,
                              mode: move.mode, refusedMilliseconds: move.mode == .offline ? elapsed : 0, totalMilliseconds: elapsed)
        }
    }

    /// Copies (or checks the copy of) a `moving` tenant and switches it to its target.
    func finishMove(_ record: TenantRecord, migrations: TenantMigrations, start: ContinuousClock.Instant = .now, stoppingAfter step: MoveStep? = nil) async throws -> MoveReport {
        guard let move = record.move else {
            throw TenancyError(code: .registryFailed, message: "\(record.name) is moving, but the registry does not say where; roll it back with tenantctl move --abort")
        }
        let source = try await site(record.placement)
        let destination = try await site(move.target)
        let schema = try SQLIdentifier(record.schema)
        return try await holdingMoveLock(record, on: source.pool) {
            var (tables, rows) = (0, Int64(0))
            // Writes are held or refused from here to the switch: from the start offline.
            var heldSince = start
            let sourceHandle = source.pool.database(schema: nil)
            if try await SchemaCopier.isFrozen(schema, on: sourceHandle), try await copyMatches(schema, source: source.pool, destination: destination.pool) {
                // An earlier attempt committed the copy and froze the source: only the switch is left.
                tables = try await SchemaCopier.tables(of: schema, on: sourceHandle).count
            } else {
                switch move.mode {
                case .offline:
                    (tables, rows) = try await copy(schema, of: record, from: source.pool, to: destination.pool, migrations: migrations, stoppingAfter: step)
                case .online:
                    (tables, rows, heldSince) = try await replicate(
                        schema, of: record, from: source.pool, to: destination.pool, sourceConfiguration: try await sourceConfiguration(record.placement),
                        migrations: migrations, stoppingAfter: step)
                }
                if step == .sourceFrozen { throw MoveStopped(step: .sourceFrozen) }
            }
            let moved = try await write(record, TenantChange(
                state: move.returnState, placement: move.target, move: .some(nil), event: .moved,
                detail: "\(record.placement) → \(move.target), \(move.mode.rawValue): \(rows) rows in \(tables) tables"))
            await changed([moved.slug].compactMap { $0 })
            let now = ContinuousClock.now
            if move.mode == .online {
                // The switch is done; what is left is tidying, and a failure only leaves objects reconcile reports.
                let replication = try replication(of: schema)
                do {
                    try await replication.stop(target: destination.pool.database(schema: nil), source: sourceHandle)
                } catch {
                    logger.warning("the replication of a finished move could not be dropped; reconcile --fix drops it", metadata: [
                        TenancyLoggingKeys.tenantSlug: "\(record.slug ?? "")", "move.replication": "\(replication.name)", LoggingKeys.error: "\(error)",
                    ])
                }
            }
            let (refused, total) = (Int((now - heldSince).wholeMilliseconds), Int((now - start).wholeMilliseconds))
            logger.info("tenant moved", metadata: [
                TenancyLoggingKeys.tenantSlug: "\(record.slug ?? "")", "move.source": "\(record.placement)", "move.target": "\(move.target)",
                "move.mode": "\(move.mode.rawValue)", "move.rows": "\(rows)", "move.refused_ms": "\(refused)", "move.total_ms": "\(total)",
            ])
            return MoveReport(tenant: try moved.requireTenant(), source: record.placement, target: move.target, outcome: .moved, tables: tables, rows: rows,
                              mode: move.mode, refusedMilliseconds: refused, totalMilliseconds: total)
        }
    }

    /// Copies `schema` online: the target subscribes to the source's tables and copies them
    /// while the tenant is served from the source; then the source's tables are locked, the
    /// target catches up with the source's last write, sequences follow, every table is
    /// checked, and the source is frozen in the transaction that held the locks.
    /// - Returns: The tables and rows, and when writes started to be held.
    private func replicate(
        _ schema: SQLIdentifier, of record: TenantRecord, from source: DatabasePool, to destination: DatabasePool, sourceConfiguration: DatabaseConfig,
        migrations: TenantMigrations, stoppingAfter step: MoveStep?
    ) async throws -> (tables: Int, rows: Int64, heldSince: ContinuousClock.Instant) {
        let replication = try replication(of: schema)
        let (src, dst) = (source.database(schema: nil), destination.database(schema: nil))
        // Whatever an interrupted attempt left is dropped: the copy starts afresh.
        try await replication.stop(target: dst, source: src)
        try await dst.withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
        if try await SchemaCopier.isFrozen(schema, on: src) {
            try await src.withTransaction { tx in try await SchemaCopier.unfreeze(schema, in: tx) }
        }
        let provisioner = Provisioner(pool: destination, migrations: try await migrationsApplied(to: schema, of: record, on: source, migrations: migrations))
        try await dst.withTransaction { tx in
            _ = try await Provisioner.lock(schema.name, in: tx)
            _ = try await provisioner.create(schema, in: tx)
        }
        let tables = try await SchemaCopier.tables(of: schema, on: src)
        let everyTable = try await Self.tableNames(of: schema, on: src)
        try await replication.start(schema, tables: tables.map(\.name), on: src)
        try await replication.subscribe(on: dst, source: sourceConfiguration)
        try await replication.waitUntilSynchronized(on: dst, timeout: Self.onlineCopyTimeout)
        if step == .targetCommitted { throw MoveStopped(step: .targetCommitted) }
        let rowsChecked = try await checkReplica(tables, everyTable: everyTable, of: schema, of: record, source: src, target: dst, replication: replication)
        let heldSince = ContinuousClock.now
        let target = record.move?.target ?? ""
        let rows = try await src.withTransaction { tx in
            try await Self.lockAgainstWrites(everyTable, of: schema, in: tx, lockTimeout: lockTimeout)
            try await replication.waitUntilApplied(upTo: try await Self.walInsertPosition(tx), on: tx, timeout: Self.catchUpTimeout)
            try await SchemaCopier.copySequences(of: schema, from: tx, to: dst)
            // Every row was checked at one point of the source's history; since then the target
            // has confirmed every later change, and the row counts must still agree.
            let deadline = ContinuousClock.now + Self.catchUpTimeout
            var rows = Int64(0)
            while true {
                let comparison = try await Self.compare(tables, of: schema, source: tx, target: dst, content: false)
                if comparison.mismatch == nil || ContinuousClock.now >= deadline {
                    rows = try Self.checked(comparison, of: record)
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            try await SchemaCopier.freeze(schema, movedTo: target, in: tx)
            return rows
        }
        logger.debug("online move checked", metadata: [TenancyLoggingKeys.tenantSlug: "\(record.slug ?? "")", "move.rows_checked": "\(rowsChecked)"])
        return (tables.count, rows, heldSince)
    }

    /// Checks every row of the replica against the source while writes go on: the source's
    /// tables are locked only until the target has applied the source's last write and a
    /// snapshot is taken on each side, and then both snapshots, which see the same rows, are
    /// compared table by table. Both readers hold their connections before the lock is taken:
    /// writers waiting on the lock may hold every other connection of the source's pool.
    /// - Returns: The rows checked.
    private func checkReplica(
        _ tables: [SchemaCopier.Table], everyTable: [String], of schema: SQLIdentifier, of record: TenantRecord,
        source: SchemaDatabase, target: SchemaDatabase, replication: LogicalReplication
    ) async throws -> Int64 {
        let (ready, isReady) = AsyncStream<Void>.makeStream()
        let (taken, isTaken) = AsyncStream<Void>.makeStream()
        let gates = [AsyncStream<Void>.makeStream(), AsyncStream<Void>.makeStream()]
        let lockTimeout = lockTimeout
        /// Waits for two signals of `stream`; `false` when it ended first (a reader failed).
        func both(_ stream: AsyncStream<Void>) async -> Bool {
            var count = 0
            for await _ in stream {
                count += 1
                if count == 2 { return true }
            }
            return false
        }
        return try await withThrowingTaskGroup(of: (isSource: Bool, fingerprints: [SchemaCopier.Fingerprint]).self) { group in
            for (index, (isSource, side)) in [(true, source), (false, target)].enumerated() {
                let gate = gates[index].stream
                group.addTask {
                    do {
                        return try await side.withTransaction(isolation: .repeatableRead, readOnly: true) { reader in
                            isReady.yield()
                            var opened = false
                            for await _ in gate {
                                opened = true
                                break
                            }
                            guard opened else { throw CancellationError() }
                            // The snapshot is taken by the first statement.
                            _ = try await reader.fetchAll("SELECT 1")
                            isTaken.yield()
                            var fingerprints: [SchemaCopier.Fingerprint] = []
                            for table in tables { fingerprints.append(try await SchemaCopier.fingerprint(table, schema: schema, on: reader)) }
                            return (isSource, fingerprints)
                        }
                    } catch {
                        isReady.finish()
                        isTaken.finish()
                        throw error
                    }
                }
            }
            defer { gates.forEach { $0.continuation.finish() } }
            // Both readers in their transactions (or one failed: the group rethrows its error).
            if await both(ready) {
                try await source.withTransaction { tx in
                    try await Self.lockAgainstWrites(everyTable, of: schema, in: tx, lockTimeout: lockTimeout)
                    try await replication.waitUntilApplied(upTo: try await Self.walInsertPosition(tx), on: tx, timeout: Self.catchUpTimeout)
                    gates.forEach { $0.continuation.yield() }
                    // Writes wait only until both snapshots are taken.
                    _ = await both(taken)
                }
            }
            var sides: [Bool: [SchemaCopier.Fingerprint]] = [:]
            while let side = try await group.next() { sides[side.isSource] = side.fingerprints }
            return try Self.checked(Self.compare(tables, source: sides[true] ?? [], target: sides[false] ?? []), of: record)
        }
    }

    /// The source's WAL insert position: every write committed before it is at or before this
    /// position (the insert position, since with asynchronous commit a commit record may not be
    /// flushed yet).
    private static func walInsertPosition(_ db: SchemaDatabase) async throws -> String {
        try await db.fetchValue("SELECT pg_current_wal_insert_lsn()::text", as: String.self) ?? "0/0"
    }

    /// The configuration this process reaches `placement` with, for the target server to
    /// subscribe to it.
    private func sourceConfiguration(_ placement: String) async throws -> DatabaseConfig {
        guard let configuration = try await placements.configuration(named: placement) else {
            throw TenancyError(
                code: .invalidArgument,
                message: "an online move from placement \"\(placement)\" needs its connection settings, and this Tenancy borrows the application's client; move it offline, or from a Tenancy built with a DatabaseConfig")
        }
        return configuration
    }

    /// The replication objects of an online move of `schema`, named for this registry.
    func replication(of schema: SQLIdentifier) throws -> LogicalReplication {
        guard let id = registry.store.preparedInfo?.id else {
            throw TenancyError(code: .registryFailed, message: "the tenant registry \(registry.location) was used before it was opened")
        }
        return LogicalReplication(schema: schema, registryID: id)
    }

    /// Every table of `schema` (the tracking table too), for locking.
    private static func tableNames(of schema: SQLIdentifier, on db: SchemaDatabase) async throws -> [String] {
        try await db.fetchAll(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            schema.name, as: String.self)
    }

    /// Locks `tables` of `schema` against writes (reads go on) for the rest of `transaction`,
    /// waiting for the writes in flight at most `lockTimeout`.
    private static func lockAgainstWrites(_ tables: [String], of schema: SQLIdentifier, in transaction: SchemaDatabase, lockTimeout: Duration) async throws {
        try await transaction.execute(try SQLTemplate("SET LOCAL lock_timeout = '\(max(1, lockTimeout.wholeMilliseconds))ms'"))
        guard !tables.isEmpty else { return }
        try await transaction.execute(try SQLTemplate("LOCK TABLE " + tables.map { "\(schema.quoted).\(SQLIdentifier.quote($0))" }.joined(separator: ", ") + " IN EXCLUSIVE MODE"))
    }

    /// Compares every table of `schema` on both sides (rows, and with `content` a checksum of
    /// every row), read on both at once.
    /// - Returns: The rows, and the first table that differs.
    private static func compare(
        _ tables: [SchemaCopier.Table], of schema: SQLIdentifier, source: SchemaDatabase, target: SchemaDatabase, content: Bool = true
    ) async throws -> (rows: Int64, mismatch: String?) {
        var (expected, found) = ([SchemaCopier.Fingerprint](), [SchemaCopier.Fingerprint]())
        for table in tables {
            async let sourceFingerprint = SchemaCopier.fingerprint(table, schema: schema, on: source, content: content)
            found.append(try await SchemaCopier.fingerprint(table, schema: schema, on: target, content: content))
            expected.append(try await sourceFingerprint)
            if expected.last != found.last { break }
        }
        return compare(tables, source: expected, target: found)
    }

    /// Compares the fingerprints of `tables` read on both sides.
    /// - Returns: The rows, and the first table that differs.
    private static func compare(_ tables: [SchemaCopier.Table], source: [SchemaCopier.Fingerprint], target: [SchemaCopier.Fingerprint]) -> (rows: Int64, mismatch: String?) {
        var rows = Int64(0)
        for (index, table) in tables.enumerated() {
            guard index < source.count, index < target.count else { return (rows, "table \(table.name) (not read)") }
            let (expected, found) = (source[index], target[index])
            guard expected == found else {
                return (rows, expected.rows == found.rows ? "table \(table.name) (same row count, other contents)" : "table \(table.name) (\(found.rows) rows against \(expected.rows))")
            }
            rows += expected.rows
        }
        return (rows, nil)
    }

    /// The rows of a comparison that matched.
    /// - Throws: When a table differs: nothing is switched.
    private static func checked(_ comparison: (rows: Int64, mismatch: String?), of record: TenantRecord) throws -> Int64 {
        guard let mismatch = comparison.mismatch else { return comparison.rows }
        throw TenancyError(
            code: .databaseFailed,
            message: "the copy of \(record.name) does not match its source: \(mismatch); nothing was switched, the tenant stays moving: resume or roll back the move",
            slug: record.slug)
    }

    /// Copies `schema` in one snapshot of the source, whose tables are locked against writes,
    /// into a new schema on `destination` migrated to the same level, checks every table, and
    /// freezes the source, which commits last.
    private func copy(
        _ schema: SQLIdentifier, of record: TenantRecord, from source: DatabasePool, to destination: DatabasePool,
        migrations: TenantMigrations, stoppingAfter step: MoveStep?
    ) async throws -> (tables: Int, rows: Int64) {
        // A copy left by an attempt that did not freeze the source may be stale: start afresh.
        try await destination.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
        if try await SchemaCopier.isFrozen(schema, on: source.database(schema: nil)) {
            try await source.database(schema: nil).withTransaction { tx in try await SchemaCopier.unfreeze(schema, in: tx) }
        }
        let everyTable = try await Self.tableNames(of: schema, on: source.database(schema: nil))
        let provisioner = Provisioner(pool: destination, migrations: try await migrationsApplied(to: schema, of: record, on: source, migrations: migrations))
        let target = record.move?.target ?? ""
        return try await source.database(schema: nil).withTransaction { src in
            // Locks first: the snapshot the copy reads is taken after every writer has finished.
            try await Self.lockAgainstWrites(everyTable, of: schema, in: src, lockTimeout: lockTimeout)
            try await SchemaCopier.pinTextFormat(in: src)
            let tables = try await SchemaCopier.tables(of: schema, on: src)
            let copied = try await destination.database(schema: nil).withTransaction { dst in
                _ = try await Provisioner.lock(schema.name, in: dst)
                _ = try await provisioner.create(schema, in: dst)
                // After the migrations, which run with the database's own settings.
                try await SchemaCopier.pinTextFormat(in: dst)
                for table in tables { _ = try await SchemaCopier.copy(table, schema: schema, from: src, to: dst) }
                try await SchemaCopier.copySequences(of: schema, from: src, to: dst)
                let rows = try Self.checked(try await Self.compare(tables, of: schema, source: src, target: dst), of: record)
                return (tables.count, rows)
            }
            if step == .targetCommitted { throw MoveStopped(step: .targetCommitted) }
            try await SchemaCopier.freeze(schema, movedTo: target, in: src)
            return copied
        }
    }

    /// Checks that the migrations create on the target the tables and columns the source has,
    /// in a transaction that is rolled back: a table or column made outside the migration set
    /// has nowhere to go.
    private func checkShape(of schema: SQLIdentifier, of record: TenantRecord, from source: DatabasePool, to destination: DatabasePool, migrations: TenantMigrations) async throws {
        struct RolledBack: Error {}
        let provisioner = Provisioner(pool: destination, migrations: try await migrationsApplied(to: schema, of: record, on: source, migrations: migrations))
        let wanted = Set(try await SchemaCopier.tables(of: schema, on: source.database(schema: nil)))
        var made: Set<SchemaCopier.Table> = []
        do {
            try await destination.database(schema: nil).withTransaction { tx in
                _ = try await provisioner.create(schema, in: tx)
                made = Set(try await SchemaCopier.tables(of: schema, on: tx))
                throw RolledBack()
            }
        } catch is RolledBack {}
        let differing = wanted.symmetricDifference(made).map(\.name)
        guard differing.isEmpty else {
            throw TenancyError(
                code: .invalidArgument,
                message: "\(record.name) cannot be moved: tables \(Set(differing).sorted().prefix(5).joined(separator: ", ")) differ from what its migrations create, and a move copies into a schema its migrations make; put the change in a migration first",
                slug: record.slug)
        }
    }

    /// The files of `migrations` the source schema has: the copy is created at the source's
    /// level (a release deployed during the move migrates it afterwards, like any tenant).
    private func migrationsApplied(to schema: SQLIdentifier, of record: TenantRecord, on source: DatabasePool, migrations: TenantMigrations) async throws -> TenantMigrations {
        let status = try await migrations.migrator(for: source.database(schema: schema)).status()
        guard status.changed.isEmpty, status.missing.isEmpty else {
            throw TenancyError(
                code: .migrationFailed,
                message: "the schema of \(record.name) has migration files this release does not have or has changed; finish the move with the release that migrated it",
                slug: record.slug)
        }
        let applied = status.pending.isEmpty ? migrations
            : TenantMigrations(set: MigrationSet(files: migrations.set.files.filter { status.applied.contains($0.filename) }), module: migrations.module, lockTimeout: migrations.lockTimeout)
        guard !applied.provisionsInStages else {
            throw TenancyError(
                code: .invalidArgument,
                message: "\(record.name) cannot be moved: its migration set has files that run outside a transaction (pgdbm:no-transaction), and a copy is created in one transaction",
                slug: record.slug)
        }
        return applied
    }

    /// Whether the copy on `destination` holds exactly what the frozen source holds.
    private func copyMatches(_ schema: SQLIdentifier, source: DatabasePool, destination: DatabasePool) async throws -> Bool {
        guard try await destination.database(schema: schema).schemaExists() else { return false }
        for table in try await SchemaCopier.tables(of: schema, on: source.database(schema: nil)) {
            let expected = try await SchemaCopier.fingerprint(table, schema: schema, on: source.database(schema: nil))
            guard let found = try? await SchemaCopier.fingerprint(table, schema: schema, on: destination.database(schema: nil)), found == expected else { return false }
        }
        return true
    }

    /// Runs `body` holding the schema's provisioning lock on `pool` (the source's), so that
    /// one process at a time moves, resumes or rolls back a tenant, and reconcile leaves it
    /// alone. `record` must still be the registry's row once the lock is held: a process that
    /// read it before another finished or rolled back the move acts on nothing.
    private func holdingMoveLock<Result: Sendable>(_ record: TenantRecord, on pool: DatabasePool, _ body: () async throws -> Result) async throws -> Result {
        try await pool.database(schema: nil).withConnection { session in
            session.markForeignSQL()
            guard try await Provisioner.lock(record.schema, on: session) else {
                throw TenancyError(code: .provisioningInProgress, message: "another process is moving \(record.name); wait for it to finish", slug: record.slug)
            }
            do {
                let now = try await registry.store.record(id: record.id)
                guard let now, now.generation == record.generation else { throw TenancyError.concurrentChange(record, now: now) }
                let result = try await body()
                try await Provisioner.unlock(record.schema, on: session)
                return result
            } catch {
                try? await Provisioner.unlock(record.schema, on: session)
                throw error
            }
        }
    }
}
