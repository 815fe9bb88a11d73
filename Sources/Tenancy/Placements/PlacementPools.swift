import Foundation
import Logging
import SchemaDB
import ServiceLifecycle
import Synchronization

/// One pool per placement. The default placement's is the pool ``Tenancy`` was built with;
/// another placement's is opened on its first use, checked against the identity the registry
/// recorded for it, and run by ``Tenancy/run()``. The opened pools together stay within a
/// bound on connections.
final class PlacementPools: Sendable {
    /// The default placement's pool.
    let primary: DatabasePool
    private let registry: TenantRegistry
    private let databases: [String: DatabaseConfig]
    private let connectionsPerPlacement: Int
    private let connectionBound: Int
    private let environment: [String: String]
    private let logger: Logger
    private let state = Mutex<State>(State())
    private let started: AsyncStream<DatabasePool>.Continuation
    private let toRun: AsyncStream<DatabasePool>

    private struct State {
        var pools: [String: Opened] = [:]
        var connections = 0
    }

    private struct Opened {
        let pool: DatabasePool
        var verified = false
        /// The last failed check, repeated to callers for a second instead of checking again.
        var failure: (at: ContinuousClock.Instant, error: TenancyError)?
    }

    /// How long a failed check of a placement is repeated before the placement is tried again.
    static let failureMemory = Duration.seconds(1)

    init(primary: DatabasePool, registry: TenantRegistry, databases: [String: DatabaseConfig] = [:], connectionsPerPlacement: Int = 8, connectionBound: Int = 64,
         environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) {
        self.primary = primary
        self.registry = registry
        self.databases = databases
        self.connectionsPerPlacement = connectionsPerPlacement
        self.connectionBound = connectionBound
        self.environment = environment
        self.logger = logger
        (toRun, started) = AsyncStream<DatabasePool>.makeStream()
    }

    /// Runs every pool opened, now or later, until the task is cancelled or the service group
    /// shuts down.
    func run() async {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for await pool in self.toRun {
                    group.addTask { await pool.run() }
                }
            }
        }
    }

    /// The pool of placement `name`, checked once against the database the registry recorded.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/placementNotFound``,
    ///   ``TenancyError/Code/placementUnreachable`` or ``TenancyError/Code/placementMismatch``.
    func pool(for name: String) async throws -> DatabasePool {
        if name == Placement.defaultName { return primary }
        let now = ContinuousClock.now
        let known = state.withLock { $0.pools[name] }
        if let known {
            if known.verified { return known.pool }
            if let failure = known.failure, now - failure.at < Self.failureMemory { throw failure.error }
        }
        guard let placement = try await registry.store.placements().first(where: { $0.name == name }) else {
            throw TenancyError.placementNotFound(name)
        }
        let pool = try known?.pool ?? open(placement)
        do {
            try await Self.verify(pool, as: placement)
            state.withLock { $0.pools[name]?.verified = true }
            return pool
        } catch let error as TenancyError {
            state.withLock { $0.pools[name]?.failure = (ContinuousClock.now, error) }
            throw error
        }
    }

    /// The pools opened so far, by placement name, the default placement's included.
    var openedPools: [String: DatabasePool] {
        var pools = state.withLock { $0.pools.mapValues(\.pool) }
        pools[Placement.defaultName] = primary
        return pools
    }

    /// The configuration a process connects to `placement` with: its own setting for it, or
    /// the recorded URL with the password from the environment (`PGPASSWORD` or the password file).
    func configuration(for placement: Placement) throws -> DatabaseConfig {
        if let configured = databases[placement.name] { return configured }
        guard let url = placement.url else {
            throw TenancyError(
                code: .placementUnreachable,
                message: "placement \"\(placement.name)\" has no URL in the registry; configure it (\(Placement.environmentVariable(forName: placement.name)) for tenantctl)")
        }
        return try DatabaseConfig(url: url).fillingPassword(from: environment)
    }

    private func open(_ placement: Placement) throws -> DatabasePool {
        var config: DatabaseConfig
        do {
            config = try configuration(for: placement)
        } catch let error as SchemaDBError {
            throw TenancyError(code: .placementUnreachable, message: "the URL of placement \"\(placement.name)\" cannot be used: \(error.message)", underlying: error)
        }
        // A placement configured by the host keeps its own pool size.
        if databases[placement.name] == nil { config.maximumConnections = connectionsPerPlacement }
        let size = config.maximumConnections
        return try state.withLock { state in
            if let existing = state.pools[placement.name] { return existing.pool }
            guard state.connections + size <= connectionBound else {
                throw TenancyError(
                    code: .placementUnreachable,
                    message: "opening placement \"\(placement.name)\" needs \(size) more connections, and the placements' pools already hold \(state.connections) of at most \(connectionBound); raise the bound (Configuration.maximumPlacementConnections)")
            }
            let pool = try DatabasePool(configuration: config, logger: logger)
            state.pools[placement.name] = Opened(pool: pool)
            state.connections += size
            started.yield(pool)
            return pool
        }
    }

    /// Checks that `pool` reaches the database recorded for `placement`.
    static func verify(_ pool: DatabasePool, as placement: Placement) async throws {
        let identity: DatabaseIdentity
        do {
            identity = try await RegistryBinding.identity(of: pool)
        } catch {
            throw TenancyError(
                code: .placementUnreachable,
                message: "placement \"\(placement.name)\" cannot be reached: \(error); its tenants are refused until it is back",
                underlying: error)
        }
        guard let recorded = placement.identity else { return }
        guard identity == recorded || (identity.systemIdentifier == "unknown" && identity.databaseName == recorded.databaseName) else {
            throw TenancyError(
                code: .placementMismatch,
                message: "placement \"\(placement.name)\" was added as \(recorded), and its URL now leads to \(identity); nothing is done there until the URL is corrected")
        }
    }
}
