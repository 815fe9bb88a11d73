public import Logging
import Metrics
public import SchemaDB
import Synchronization

/// Hands out tenant-scoped database handles, all over the one shared pool.
///
/// Handles are kept in a bounded LRU cache. Concurrent misses for one tenant read the registry
/// once (single flight). Changes made through this process invalidate entries at once; changes
/// made by other processes are seen once an entry is older than
/// ``Configuration/timeToLive``. A hit takes one lock and a dictionary lookup: no allocation of a
/// pool or connection, ever.
public final class TenantDirectory: Sendable {
    /// Directory settings. Every one has a default.
    public struct Configuration: Sendable {
        /// The most tenants cached. Defaults to `10_000`.
        public var capacity: Int = 10_000
        /// How long an entry is trusted before the registry is read again. Defaults to 30 s.
        public var timeToLive: Duration = .seconds(30)

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

    private let pool: DatabasePool
    private let registry: TenantRegistry
    private let configuration: Configuration
    private let logger: Logger
    private let state: Mutex<State>
    private let hitCounter = Counter(label: "tenancy_directory_hits")
    private let missCounter = Counter(label: "tenancy_directory_misses")

    /// Creates a directory over `pool` and `registry`.
    public init(pool: DatabasePool, registry: TenantRegistry, configuration: Configuration = .init(), logger: Logger) {
        self.pool = pool
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        self.state = Mutex(State(capacity: max(1, configuration.capacity)))
    }

    /// The handle of the tenant `slug`.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidSlug``,
    ///   ``TenancyError/Code/tenantNotFound``, ``TenancyError/Code/tenantSuspended``,
    ///   ``TenancyError/Code/tenantDeleted``, or ``TenancyError/Code/provisioningInProgress`` /
    ///   ``TenancyError/Code/provisioningFailed`` for a tenant that is not ready.
    public func database(for slug: String) async throws -> SchemaDatabase {
        if let entry = cachedEntry(slug) { return try entry.handle() }
        return try await database(for: try TenantSlug(slug))
    }

    /// The handle of the tenant `slug`.
    public func database(for slug: TenantSlug) async throws -> SchemaDatabase {
        var attempts = 0
        while true {
            let now = ContinuousClock.now
            let decision = state.withLock { $0.decide(slug.rawValue, now: now, timeToLive: configuration.timeToLive) }
            switch decision {
            case .hit(let entry):
                hitCounter.increment()
                return try entry.handle()
            case .load:
                missCounter.increment()
                let result: Result<Entry, any Error>
                do { result = .success(try await load(slug)) } catch { result = .failure(error) }
                let waiters = state.withLock { $0.finishLoading(slug.rawValue, result: result, now: ContinuousClock.now) }
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

    /// Forgets the cached handle of `slug`, so the next request reads the registry.
    public func invalidate(_ slug: TenantSlug) {
        state.withLock { $0.remove(slug.rawValue) }
    }

    /// Forgets every cached handle.
    public func invalidateAll() {
        state.withLock { $0.removeAll() }
    }

    /// Cache counters.
    public var statistics: Statistics {
        state.withLock { Statistics(hits: $0.hits, misses: $0.misses, evictions: $0.evictions, cached: $0.index.count) }
    }

    private func cachedEntry(_ slug: String) -> Entry? {
        let now = ContinuousClock.now
        let entry: Entry? = state.withLock { state in
            guard case .hit(let entry) = state.peek(slug, now: now, timeToLive: configuration.timeToLive) else { return nil }
            return entry
        }
        if entry != nil { hitCounter.increment() }
        return entry
    }

    private func load(_ slug: TenantSlug) async throws -> Entry {
        guard let tenant = try await registry.tenant(slug: slug) else { throw TenancyError.notFound(slug.rawValue) }
        switch tenant.state {
        case .active:
            var db = pool.database(schema: try SQLIdentifier(tenant.schema))
            db.logger[metadataKey: TenancyLoggingKeys.tenantSlug] = "\(slug)"
            db.logger[metadataKey: TenancyLoggingKeys.tenantSchema] = "\(tenant.schema)"
            return .active(db)
        case .suspended:
            return .unavailable(TenancyError(code: .tenantSuspended, message: "tenant \"\(slug)\" is suspended; resume it to serve it again", slug: slug.rawValue))
        case .deleted:
            return .unavailable(TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted", slug: slug.rawValue))
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
}
