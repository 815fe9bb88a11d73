import Foundation
import Logging
import SchemaDB

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
    /// How long the tenant was refused, from the start of the move to the switch.
    public var refusedMilliseconds: Int
}

/// Where a move stops when a test asks it to, as a process killed right after that step would.
enum MoveStep: Sendable, Equatable, CaseIterable {
    /// The registry says `moving`.
    case markedMoving
    /// The copy committed on the target; the source is not frozen yet.
    case targetCommitted
    /// The source is frozen; the registry still names it.
    case sourceFrozen
}

struct MoveStopped: Error {
    var step: MoveStep
}

extension TenantLifecycle {
    /// Moves a tenant's schema to placement `target`, offline: the tenant is `moving` and
    /// refused by every process; its tables are locked against writes and copied in one
    /// snapshot into a new schema at the same migration level, verified table by table (row
    /// count and a checksum of every row), the source is frozen (its tables refuse writes),
    /// and the registry switches the tenant to `target`.
    ///
    /// A move interrupted at any point is finished by calling this again (or
    /// ``resumeMove(_:)``), or rolled back with ``abortMove(_:)``: the copy is redone unless the
    /// source was frozen, and then the copy is checked again before the switch. At no time are
    /// two copies writable: the target is not routed to before the source is frozen.
    func move(_ slug: TenantSlug, to target: String, stoppingAfter step: MoveStep? = nil) async throws -> MoveReport {
        let migrations = try requireMigrations()
        let start = ContinuousClock.now
        var record = try await record(slug)
        if record.state == .moving {
            guard record.move?.target == target else { throw TenancyError.moving(record) }
            return try await finishMove(record, migrations: migrations, start: start, stoppingAfter: step)
        }
        if record.placement == target {
            return MoveReport(tenant: try record.requireTenant(), source: target, target: target, outcome: .alreadyThere, tables: 0, rows: 0, refusedMilliseconds: 0)
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
        record = try await write(record, TenantChange(
            state: .moving, move: .some(TenantMove(target: target, returnState: record.state, mode: .offline)),
            event: .moveStarted, detail: "\(record.placement) → \(target), offline"))
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
        return try await self.move(slug, to: move.target)
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
            do {
                let destination = try await site(move.target)
                try await destination.pool.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
            } catch let error as TenancyError where [.placementUnreachable, .placementMismatch].contains(error.code) {
                // The copy is never routed to; reconcile reports it on the target once it is back.
                logger.warning("the copy of a rolled-back move could not be dropped", metadata: [
                    TenancyLoggingKeys.tenantSlug: "\(slug)", "move.target": "\(move.target)", LoggingKeys.error: "\(error)",
                ])
            }
            if try await SchemaCopier.isFrozen(schema, on: source.pool.database(schema: nil)) {
                try await source.pool.database(schema: nil).withTransaction { tx in try await SchemaCopier.unfreeze(schema, in: tx) }
            }
            let back = try await write(record, TenantChange(state: move.returnState, move: .some(nil), event: .moveRolledBack, detail: "\(record.placement) → \(move.target)"))
            await changed([slug.rawValue])
            return MoveReport(tenant: try back.requireTenant(), source: record.placement, target: move.target, outcome: .rolledBack, tables: 0, rows: 0,
                              refusedMilliseconds: Int((ContinuousClock.now - start).wholeMilliseconds))
        }
    }

    /// Copies (or checks the copy of) a `moving` tenant and switches it to its target.
    private func finishMove(_ record: TenantRecord, migrations: TenantMigrations, start: ContinuousClock.Instant, stoppingAfter step: MoveStep?) async throws -> MoveReport {
        guard let move = record.move else {
            throw TenancyError(code: .registryFailed, message: "\(record.name) is moving, but the registry does not say where; roll it back with tenantctl move --abort")
        }
        let source = try await site(record.placement)
        let destination = try await site(move.target)
        let schema = try SQLIdentifier(record.schema)
        return try await holdingMoveLock(record, on: source.pool) {
            var (tables, rows) = (0, Int64(0))
            let sourceHandle = source.pool.database(schema: nil)
            if try await SchemaCopier.isFrozen(schema, on: sourceHandle), try await copyMatches(schema, source: source.pool, destination: destination.pool) {
                // An earlier attempt committed the copy and froze the source: only the switch is left.
                tables = try await SchemaCopier.tables(of: schema, on: sourceHandle).count
            } else {
                (tables, rows) = try await copy(schema, of: record, from: source.pool, to: destination.pool, migrations: migrations, stoppingAfter: step)
                if step == .sourceFrozen { throw MoveStopped(step: .sourceFrozen) }
            }
            let moved = try await write(record, TenantChange(
                state: move.returnState, placement: move.target, move: .some(nil), event: .moved,
                detail: "\(record.placement) → \(move.target): \(rows) rows in \(tables) tables"))
            await changed([moved.slug].compactMap { $0 })
            let refused = Int((ContinuousClock.now - start).wholeMilliseconds)
            logger.info("tenant moved", metadata: [
                TenancyLoggingKeys.tenantSlug: "\(record.slug ?? "")", "move.source": "\(record.placement)", "move.target": "\(move.target)",
                "move.rows": "\(rows)", "move.refused_ms": "\(refused)",
            ])
            return MoveReport(tenant: try moved.requireTenant(), source: record.placement, target: move.target, outcome: .moved, tables: tables, rows: rows,
                              refusedMilliseconds: refused)
        }
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
        let everyTable = try await source.database(schema: nil).fetchAll(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            schema.name, as: String.self)
        let provisioner = Provisioner(pool: destination, migrations: try await migrationsApplied(to: schema, of: record, on: source, migrations: migrations))
        let target = record.move?.target ?? ""
        return try await source.database(schema: nil).withTransaction { src in
            // Locks first: the snapshot the copy reads is taken after every writer has finished.
            try await src.execute(try SQLTemplate("SET LOCAL lock_timeout = '\(max(1, lockTimeout.wholeMilliseconds))ms'"))
            if !everyTable.isEmpty {
                try await src.execute(try SQLTemplate("LOCK TABLE " + everyTable.map { "\(schema.quoted).\(SQLIdentifier.quote($0))" }.joined(separator: ", ") + " IN EXCLUSIVE MODE"))
            }
            let tables = try await SchemaCopier.tables(of: schema, on: src)
            let copied = try await destination.database(schema: nil).withTransaction { dst in
                _ = try await Provisioner.lock(schema.name, in: dst)
                _ = try await provisioner.create(schema, in: dst)
                var rows = Int64(0)
                for table in tables { rows += Int64(try await SchemaCopier.copy(table, schema: schema, from: src, to: dst)) }
                try await SchemaCopier.copySequences(of: schema, from: src, to: dst)
                for table in tables {
                    // Both sides are read at once: they are different connections.
                    async let sourceFingerprint = SchemaCopier.fingerprint(table, schema: schema, on: src)
                    let found = try await SchemaCopier.fingerprint(table, schema: schema, on: dst)
                    let expected = try await sourceFingerprint
                    guard expected == found else {
                        throw TenancyError(
                            code: .databaseFailed,
                            message: "the copy of table \(table.name) of \(record.name) does not match its source (\(found.rows) rows against \(expected.rows)); nothing was switched, the tenant stays moving: roll it back with tenantctl move --abort",
                            slug: record.slug)
                    }
                }
                return (tables.count, rows)
            }
            if step == .targetCommitted { throw MoveStopped(step: .targetCommitted) }
            try await SchemaCopier.freeze(schema, movedTo: target, in: src)
            return copied
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
    /// one process at a time moves, resumes or rolls back a tenant, and reconcile leaves it alone.
    private func holdingMoveLock<Result: Sendable>(_ record: TenantRecord, on pool: DatabasePool, _ body: () async throws -> Result) async throws -> Result {
        try await pool.database(schema: nil).withConnection { session in
            session.markForeignSQL()
            guard try await Provisioner.lock(record.schema, on: session) else {
                throw TenancyError(code: .provisioningInProgress, message: "another process is moving \(record.name); wait for it to finish", slug: record.slug)
            }
            do {
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
