import Foundation
import Logging
import Metrics
import SchemaDB

/// Performs every change of a tenant's state: onboarding (a claimed spare or a provisioned
/// schema), adoption, spares, suspend, resume, rename, delete, and reconcile's repairs.
///
/// Each change is one conditional registry write: it names the generation of the row it read
/// and is refused (``TenancyError/Code/concurrentChange``) if another process moved the row on.
/// The slugs each change touched are announced, so every process's directory evicts them, and
/// this process's directory forgets them at once.
struct TenantLifecycle: Sendable {
    let placements: PlacementPools
    let registry: TenantRegistry
    let migrations: TenantMigrations?
    let schemaPrefix: String
    /// The longest wait for a table lock while dropping a schema.
    let lockTimeout: Duration
    let logger: Logger
    /// Forgets this process's cached handles of these slugs.
    let evict: @Sendable ([String]) -> Void
    /// Forgets this process's cached handles of these slugs and, for a registry that cannot
    /// announce in its own transactions, announces them to every other process. Never called
    /// while a pooled connection is held: announcing may need one.
    let changed: @Sendable ([String]) async -> Void
    /// Opens the registry and checks it describes this database, once.
    let ready: @Sendable () async throws -> Void

    let provisionedCounter = Counter(label: "tenancy_tenants_provisioned")
    let failedCounter = Counter(label: "tenancy_provisioning_failures")
    let claimedCounter = Counter(label: "tenancy_spares_claimed")

    /// How a change's registry writes meet its DDL.
    enum Mode {
        /// The registry is in the tenants' database, on the same pool: a change and its DDL
        /// commit in one transaction.
        case atomic(PostgresRegistryStore)
        /// The registry is elsewhere (a SQLite file, another database): its writes commit
        /// before and after the DDL's transaction, and a crash between them leaves a row that
        /// the next attempt or reconcile settles by looking at the schema.
        case stepwise(any RegistryStore)
    }

    /// Where a change's DDL runs: the pool of a placement, and how the registry's writes meet it.
    struct Site {
        let placement: String
        let pool: DatabasePool
        let mode: Mode
    }

    /// The site of `placement`. Only a registry on the placement's own pool commits with its DDL.
    func site(_ placement: String) async throws -> Site {
        try await ready()
        let pool = try await placements.pool(for: placement)
        if let store = registry.store as? PostgresRegistryStore, store.isColocated(with: pool) { return Site(placement: placement, pool: pool, mode: .atomic(store)) }
        return Site(placement: placement, pool: pool, mode: .stepwise(registry.store))
    }

    func requireMigrations() throws -> TenantMigrations {
        guard let migrations else {
            throw TenancyError(code: .migrationSetUnavailable, message: "this needs the tenant migration set, and none was loaded; set the migrations directory")
        }
        return migrations
    }

    /// The row of tenant `slug`.
    func record(_ slug: TenantSlug) async throws -> TenantRecord {
        try await ready()
        guard let record = try await registry.store.record(slug: slug.rawValue) else { throw TenancyError.notFound(slug.rawValue) }
        return record
    }

    // MARK: - Changes without DDL

    func suspend(_ slug: TenantSlug) async throws -> Tenant {
        try await changeState(slug, to: .suspended, event: .suspended)
    }

    func resume(_ slug: TenantSlug) async throws -> Tenant {
        try await changeState(slug, to: .active, event: .resumed)
    }

    private func changeState(_ slug: TenantSlug, to state: TenantState, event: TenantEvent.Kind) async throws -> Tenant {
        let record = try await record(slug)
        if record.state == .moving { throw TenancyError.moving(record) }
        try Self.checkMove(record, to: state)
        let moved = try await write(record, TenantChange(state: state, event: event))
        await changed([slug.rawValue])
        return try moved.requireTenant()
    }

    func rename(_ slug: TenantSlug, to newSlug: TenantSlug) async throws -> Tenant {
        let record = try await record(slug)
        guard record.state != .deleted && record.state != .deleting else {
            throw TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted and cannot be renamed", slug: slug.rawValue)
        }
        guard newSlug != slug else { return try record.requireTenant() }
        if record.state == .moving { throw TenancyError.moving(record) }
        let renamed = try await write(record, TenantChange(slug: newSlug, event: .renamed, detail: "\(slug) → \(newSlug)"))
        await changed([slug.rawValue, newSlug.rawValue])
        return try renamed.requireTenant()
    }

    static func checkMove(_ record: TenantRecord, to state: TenantState) throws {
        guard record.state.canMove(to: state) else {
            let gone = record.state == .deleted || record.state == .deleting
            throw TenancyError(
                code: gone ? .tenantDeleted : .illegalTransition,
                message: "\(record.name) is \(record.state.rawValue) and cannot become \(state.rawValue)", slug: record.slug)
        }
    }

    // MARK: - Delete

    /// Makes the tenant unreachable (`deleting`, announced), drops its schema with a bounded
    /// wait for locks, and records the tombstone. A drop that fails puts the tenant back in the
    /// state it was in; one whose outcome is unknown leaves it `deleting`, and running the
    /// delete again finishes it. Deleting a deleted tenant changes nothing and returns it.
    func delete(_ slug: TenantSlug, confirmingDataLoss: Bool) async throws -> Tenant {
        guard confirmingDataLoss else {
            throw TenancyError(code: .confirmationRequired, message: "deleting tenant \"\(slug)\" drops its schema and data; confirm to go ahead", slug: slug.rawValue)
        }
        var record = try await record(slug)
        // A delete that already finished (run again after an interruption) has nothing left to do.
        if record.state == .deleted { return try record.requireTenant() }
        let site = try await site(record.placement)
        let pool = site.pool
        let previous = record.state
        if previous != .deleting {
            try Self.checkMove(record, to: .deleting)
            record = try await write(record, TenantChange(state: .deleting, event: .deleting, detail: "from \(previous.rawValue)"))
            await changed([slug.rawValue])
        }
        let schema = try SQLIdentifier(record.schema)
        let finished = TenantChange(state: .deleted, lastError: .some(nil), event: .deleted)
        do {
            let deleted: TenantRecord
            switch site.mode {
            case .atomic(let store):
                deleted = try await pool.database(schema: nil).withTransaction { tx in
                    try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout)
                    return try await store.session(in: tx).update(record, finished)
                }
            case .stepwise(let store):
                try await pool.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
                deleted = try await store.update(record, finished)
            }
            await changed([slug.rawValue])
            logger.info("tenant deleted", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(record.schema)"])
            return try deleted.requireTenant()
        } catch {
            return try await settleFailedDrop(record, previous: previous, schema: schema, on: pool, error: error)
        }
    }

    /// After a drop that threw: finishes it if the schema is gone after all (a lost reply), or
    /// puts the tenant back in `previous`, or leaves it `deleting` when nothing can be known.
    private func settleFailedDrop(_ record: TenantRecord, previous: TenantState, schema: SQLIdentifier, on pool: DatabasePool, error: any Error) async throws -> Tenant {
        let store = registry.store
        let slug = record.slug ?? record.schema
        let read: (TenantRecord?, Bool)? = try? await settling { (try await store.record(id: record.id), try await pool.database(schema: schema).schemaExists()) }
        guard let (current, exists) = read, let now = current else {
            throw TenancyError(
                code: .databaseFailed,
                message: "dropping the schema of tenant \"\(slug)\" failed (\(error)) and its outcome is unknown; the tenant stays deleting, no longer served; run the delete again to finish it",
                slug: record.slug, underlying: error)
        }
        if now.state == .deleted { return try now.requireTenant() }
        if !exists {
            let deleted = try await store.update(now, TenantChange(state: .deleted, lastError: .some(nil), event: .deleted))
            await changed([slug])
            return try deleted.requireTenant()
        }
        if previous != .deleting {
            _ = try await store.update(now, TenantChange(state: previous, lastError: .some("\(error)"), event: .deleteRolledBack, detail: "\(error)"))
            await changed([slug])
            throw TenancyError(
                code: .databaseFailed,
                message: "dropping the schema of tenant \"\(slug)\" failed: \(error); nothing was dropped and the tenant is \(previous.rawValue) again",
                slug: record.slug, underlying: error)
        }
        throw TenancyError(
            code: .databaseFailed,
            message: "dropping the schema of tenant \"\(slug)\" failed: \(error); the tenant stays deleting, no longer served; run the delete again",
            slug: record.slug, underlying: error)
    }

    // MARK: - Helpers

    /// Writes a change that has no DDL. When its answer is lost with the connection, the row
    /// is read back: the change went through if the row is at the next generation, in the
    /// state and under the slug the change gives it.
    func write(_ record: TenantRecord, _ change: TenantChange) async throws -> TenantRecord {
        do {
            return try await registry.store.update(record, change)
        } catch where Self.isConnectionLoss(error) {
            let next = record.applying(change, at: Date())
            guard let settled = try? await settling({ try await registry.store.settledRecord(after: record) }),
                  !settled.fenced, let now = settled.row, now.generation == record.generation + 1, now.state == next.state, now.slug == next.slug,
                  now.placement == next.placement else { throw error }
            return now
        }
    }

    /// A fresh schema name: the prefix and 16 random hex digits.
    func makeSchemaName() -> String {
        schemaPrefix + String(UInt64.random(in: 0 ... .max) | (1 << 63), radix: 16)
    }

    /// Runs a read that settles an outcome left unknown by a lost connection, trying again
    /// for about three seconds while the pool may still hand out connections that closed with
    /// the one that failed.
    func settling<Result: Sendable>(_ read: () async throws -> Result) async throws -> Result {
        var attempt = 0
        while true {
            do {
                return try await read()
            } catch where attempt < 5 && Self.isConnectionLoss(error) {
                attempt += 1
                try await Task.sleep(for: .milliseconds(100 << attempt))
            }
        }
    }

    static func isConnectionLoss(_ error: any Error) -> Bool {
        if let error = error as? SchemaDBError { return error.code == .connectionFailed }
        if let error = error as? TenancyError, let underlying = error.underlying { return isConnectionLoss(underlying) }
        return false
    }

    /// Writes `change` to `row`, whose DDL already committed, trying again while the registry
    /// is busy. When another process settled the row first (adoption by reconcile), the row
    /// as it now is answers.
    func recordCommitted(_ row: TenantRecord, _ change: TenantChange, in store: any RegistryStore) async throws -> TenantRecord {
        var attempt = 0
        while true {
            do {
                return try await store.update(row, change)
            } catch let error as TenancyError where error.code == .concurrentChange {
                if let now = try await store.record(id: row.id), now.state == change.state { return now }
                throw error
            } catch let error as TenancyError where error.code == .registryBusy || error.code == .registryFailed {
                attempt += 1
                guard attempt < 4 else {
                    throw TenancyError(
                        code: error.code,
                        message: "the schema of \(row.name) was committed, but the registry could not record it (\(error)); run the same command again to adopt it, or tenantctl doctor --fix",
                        slug: row.slug, underlying: error)
                }
                try await Task.sleep(for: .milliseconds(250 * attempt))
            }
        }
    }
}

extension TenantRecord {
    /// The tenant of a row that has a slug.
    func requireTenant() throws -> Tenant {
        guard let tenant else {
            throw TenancyError(code: .registryFailed, message: "registry row \(id) (schema \(schema)) has no slug where a tenant was expected")
        }
        return tenant
    }
}
