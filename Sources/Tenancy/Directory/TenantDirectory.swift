import Logging
import Metrics
public import SchemaDB
import Synchronization

/// Hands out tenant-scoped database handles, each over the pool of its tenant's placement
/// (one shared pool per PostgreSQL database).
///
/// Handles are kept in a bounded LRU cache. Concurrent misses for one tenant read the registry
/// once (single flight). A hit takes one lock and a dictionary lookup: no allocation of a pool
/// or connection, ever.
///
/// Entries stay fresh in four ways:
/// - a change made through this process evicts its slugs at once;
/// - a statement refused as read-only (the schema a move left behind) evicts its tenant;
/// - a change made by any other process is announced with PostgreSQL `NOTIFY`, and the
///   ``Tenancy`` service listening for it evicts at once;
/// - every entry expires after ``Configuration/timeToLive``, the last safety net, or after
///   ``Configuration/unconfirmedTimeToLive`` while no listener is connected.
///
/// A slug never reaches another tenant's schema: a slug given up by a rename cannot be taken
/// by another tenant until ``RegistryInfo/slugReuseDelay`` has passed, which is longer than any
/// entry lives, so no cache anywhere can still hold the old tenant under it.
public final class TenantDirectory: Sendable {
    /// Directory settings. Every one has a default.
    public struct Configuration: Sendable {
        /// The most tenants cached. Defaults to `10_000`.
        public var capacity: Int = 10_000
        /// How long an entry is trusted before the registry is read again, when no change
        /// announcement evicted it first. Defaults to 30 s; it must be shorter than the
        /// registry's ``RegistryInfo/slugReuseDelay``.
        public var timeToLive: Duration = .seconds(30)
        /// How long an entry is trusted while the ``Tenancy`` service is not (yet, or no
        /// longer) listening for change announcements. Defaults to 1 s.
        public var unconfirmedTimeToLive: Duration = .seconds(1)
        /// Refuse tenants whose recorded migration level is behind this process's migration set
        /// (``TenancyError/Code/migrationPending``), so that new code never runs on an old
        /// schema. Such a refusal is trusted for ``unconfirmedTimeToLive`` only, so a tenant is
        /// served within that time of being migrated. Defaults to `true`; it has no effect when
        /// no migration set is loaded.
        public var refusesTenantsBehindMigrationSet: Bool = true
        /// Instead of refusing a tenant behind the migration set, migrate it on its first
        /// request (the request waits; other requests for it wait for the same migration) and
        /// serve it. For rolling deploys, where a replica of the older release can still onboard
        /// a tenant at the older level after the fleet was migrated. A migration that fails
        /// refuses the tenant as above and is tried again after ``unconfirmedTimeToLive``.
        /// Defaults to `false`; it needs ``refusesTenantsBehindMigrationSet``.
        public var migratesTenantsBehindMigrationSet: Bool = false

        public init() {}
    }

    /// Cache counters since the directory was created.
    public struct Statistics: Sendable, Hashable {
        public var hits: Int
        public var misses: Int
        public var evictions: Int
        public var cached: Int
    }

    enum Entry: Sendable {
        case active(SchemaDatabase)
        case unavailable(TenancyError)
    }

    /// Whether change announcements reach this directory.
    enum ListenerState: UInt8, AtomicRepresentable {
        /// No listener was asked for: entries live ``Configuration/timeToLive``.
        case notExpected
        /// A listener is connected.
        case listening
        /// A listener was asked for and is not connected.
        case down
    }

    private let placements: PlacementPools
    private let registry: TenantRegistry
    private let migrations: TenantMigrations?
    private let configuration: Configuration
    private let logger: Logger
    private let prepare: @Sendable () async throws -> Void
    private let state: Mutex<State>
    private let listener: Atomic<ListenerState>
    private let hitCounter = Counter(label: "tenancy_directory_hits")
    private let missCounter = Counter(label: "tenancy_directory_misses")

    /// - Parameters:
    ///   - expectsListener: Whether a ``ChangeListener`` will keep the directory in step; until
    ///     it listens, entries live ``Configuration/unconfirmedTimeToLive``.
    ///   - prepare: Checks the registry before the first load.
    ///   - migrations: The migration set tenants must be at (see
    ///     ``Configuration/refusesTenantsBehindMigrationSet``).
    init(placements: PlacementPools, registry: TenantRegistry, configuration: Configuration = .init(), logger: Logger,
         expectsListener: Bool = false, migrations: TenantMigrations? = nil, prepare: (@Sendable () async throws -> Void)? = nil) {
        self.placements = placements
        self.registry = registry
        self.migrations = configuration.refusesTenantsBehindMigrationSet ? migrations : nil
        self.configuration = configuration
        self.logger = logger
        self.prepare = prepare ?? { _ = try await registry.prepared() }
        self.state = Mutex(State(capacity: max(1, configuration.capacity)))
        self.listener = Atomic(expectsListener ? .down : .notExpected)
    }

    /// The handle of the tenant `slug`.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidSlug``,
    ///   ``TenancyError/Code/tenantNotFound``, ``TenancyError/Code/tenantSuspended``,
    ///   ``TenancyError/Code/tenantDeleted``, ``TenancyError/Code/provisioningInProgress`` /
    ///   ``TenancyError/Code/provisioningFailed`` for a tenant that is not ready, or
    ///   ``TenancyError/Code/migrationPending`` for one behind the migration set.
    public func database(for slug: String) async throws -> SchemaDatabase {
        if let entry = cachedEntry(slug) { return try entry.handle() }
        return try await database(for: try TenantSlug(slug))
    }

    /// The handle of the tenant `slug`.
    public func database(for slug: TenantSlug) async throws -> SchemaDatabase {
        var attempts = 0
        while true {
            let now = ContinuousClock.now
            let decision = state.withLock { $0.decide(slug.rawValue, now: now, timeToLive: timeToLive) }
            switch decision {
            case .hit(let entry):
                hitCounter.increment()
                return try entry.handle()
            case .load:
                missCounter.increment()
                let result: Result<Entry, any Error>
                do { result = .success(try await load(slug)) } catch { result = .failure(error) }
                let maximumAge = (try? result.get())?.isProvisional == true ? configuration.unconfirmedTimeToLive : nil
                let waiters = state.withLock { $0.finishLoading(slug.rawValue, result: result, startedAt: now, maximumAge: maximumAge) }
                for waiter in waiters { waiter.resume(with: result.map(Optional.some)) }
                return try result.get().handle()
            case .wait:
                attempts += 1
                let entry: Entry? = try await withCheckedThrowingContinuation { continuation in
                    let joined = state.withLock { $0.join(slug.rawValue, continuation) }
                    if !joined { continuation.resume(returning: nil) }
                }
                if let entry { return try entry.handle() }
                if attempts > 3 { return try await load(slug).handle() }
            }
        }
    }

    /// Whether change announcements from other processes reach this directory now.
    public var isListeningForChanges: Bool { listener.load(ordering: .relaxed) == .listening }

    /// Cache counters.
    public var statistics: Statistics {
        state.withLock { Statistics(hits: $0.hits, misses: $0.misses, evictions: $0.evictions, cached: $0.index.count) }
    }

    // MARK: - Invalidation

    /// Forgets the cached handles of `slugs`, so the next request reads the registry.
    func invalidate(_ slugs: [String]) {
        state.withLock { state in
            for slug in slugs { state.remove(slug) }
        }
    }

    /// Forgets every cached handle.
    func invalidateAll() {
        state.withLock { $0.removeAll() }
    }

    /// Evicts what a change announcement names.
    func apply(announcement payload: String) {
        if let slugs = ChangeAnnouncement.slugs(in: payload) { invalidate(slugs) } else { invalidateAll() }
    }

    /// The listener is connected: what was cached before may have missed announcements.
    func listenerStarted() {
        invalidateAll()
        listener.store(.listening, ordering: .relaxed)
    }

    /// The listener lost its connection: announcements may be missed from now on.
    func listenerStopped() {
        listener.store(.down, ordering: .relaxed)
        invalidateAll()
    }

    private var timeToLive: Duration {
        listener.load(ordering: .relaxed) == .down ? min(configuration.timeToLive, configuration.unconfirmedTimeToLive) : configuration.timeToLive
    }

    private func cachedEntry(_ slug: String) -> Entry? {
        let now = ContinuousClock.now
        let timeToLive = self.timeToLive
        let entry: Entry? = state.withLock { state in
            guard case .hit(let entry) = state.peek(slug, now: now, timeToLive: timeToLive) else { return nil }
            return entry
        }
        if entry != nil { hitCounter.increment() }
        return entry
    }

    private func load(_ slug: TenantSlug) async throws -> Entry {
        try await prepare()
        guard let record = try await registry.store.record(slug: slug.rawValue), let tenant = record.tenant else {
            throw TenancyError.notFound(slug.rawValue)
        }
        // A tenant moving online is served where it is until the switch; its writes wait on the
        // move's locks for the final catch-up and then fail on the frozen source.
        let servedState = tenant.state == .moving && record.move?.mode == .online ? record.move?.returnState ?? .moving : tenant.state
        switch servedState {
        case .active:
            // A placement that is down or changed refuses its own tenants only; the refusal is
            // kept as briefly as a pending migration's, so the tenant is served once it is back.
            let pool: DatabasePool
            do {
                pool = try await placements.pool(for: tenant.placement)
            } catch let error as TenancyError {
                var refusal = error
                refusal.slug = slug.rawValue
                refusal.message = "tenant \"\(slug)\" is not served: \(error.message)"
                return .unavailable(refusal)
            }
            if let migrations, case .behind(let pending) = migrations.standing(of: tenant.migrationLevel) {
                let at = tenant.migrationLevel.map { "is at \($0.lastFile)" } ?? "has no recorded migration level"
                let refusal = TenancyError(
                    code: .migrationPending,
                    message: "tenant \"\(slug)\" \(at), \(pending) files behind this server's migration set; it is served once migrated (tenantctl migrate)",
                    slug: slug.rawValue)
                guard configuration.migratesTenantsBehindMigrationSet else { return .unavailable(refusal) }
                do {
                    let applied = try await TenantLifecycle.bringUpToDate(record, provisioner: Provisioner(pool: pool, migrations: migrations), store: registry.store)
                    logger.info("migrated a tenant behind the migration set on its first request", metadata: [
                        TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(tenant.schema)", "tenancy.applied": "\(applied.joined(separator: ", "))",
                    ])
                } catch {
                    logger.error("a tenant behind the migration set could not be migrated on its first request", metadata: [
                        TenancyLoggingKeys.tenantSlug: "\(slug)", TenancyLoggingKeys.tenantSchema: "\(tenant.schema)", LoggingKeys.error: "\(error)",
                    ])
                    return .unavailable(refusal)
                }
            }
            var db = pool.database(schema: try SQLIdentifier(tenant.schema))
            db.logger[metadataKey: TenancyLoggingKeys.tenantSlug] = "\(slug)"
            db.logger[metadataKey: TenancyLoggingKeys.tenantID] = "\(tenant.id)"
            db.logger[metadataKey: TenancyLoggingKeys.tenantSchema] = "\(tenant.schema)"
            if tenant.placement != Placement.defaultName { db.logger[metadataKey: TenancyLoggingKeys.placement] = "\(tenant.placement)" }
            db.spanAttributes["tenant.slug"] = slug.rawValue
            // A write refused as read-only means the schema was frozen by a move: the tenant is
            // read again on its next request, even before the move's announcement arrives.
            db.failureObserver = { [weak self] error in
                if error.sqlState == SchemaCopier.frozenSQLState { self?.invalidate([slug.rawValue]) }
            }
            return .active(db)
        case .suspended:
            return .unavailable(TenancyError(code: .tenantSuspended, message: "tenant \"\(slug)\" is suspended; resume it to serve it again", slug: slug.rawValue))
        case .deleting, .deleted:
            return .unavailable(TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted", slug: slug.rawValue))
        case .moving:
            return .unavailable(TenancyError.moving(record))
        case .provisioning:
            return .unavailable(TenancyError(code: .provisioningInProgress, message: "tenant \"\(slug)\" is still being provisioned; try again shortly", slug: slug.rawValue))
        case .failed, .spare:
            return .unavailable(TenancyError(code: .provisioningFailed, message: "tenant \"\(slug)\" failed to provision; provision it again", slug: slug.rawValue))
        }
    }
}

extension TenantDirectory.Entry {
    func handle() throws -> SchemaDatabase {
        switch self {
        case .active(let db): return db
        case .unavailable(let error): throw error
        }
    }

    /// A refusal that lifts without a change announcement (a migration records a level and
    /// announces nothing): trusted for a short time only.
    var isProvisional: Bool {
        if case .unavailable(let error) = self {
            return [.migrationPending, .placementUnreachable, .placementMismatch, .placementNotFound, .tenantMoving].contains(error.code)
        }
        return false
    }
}
