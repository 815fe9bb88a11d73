import PostgresNIO
import Synchronization
public import Tenancy
public import Vapor

/// Runs the app's `PostgresClient` and `Tenancy` for as long as the Vapor application runs, and
/// prepares the fleet before the server accepts requests. Vapor 4 has no `ServiceGroup`: this
/// handler is its equivalent.
final class TenancyLifecycle: LifecycleHandler {
    let client: PostgresClient
    let tenancy: Tenancy
    let startup: Tenancy.StartupOptions
    private let running = Mutex<Task<Void, Never>?>(nil)

    init(client: PostgresClient, tenancy: Tenancy, startup: Tenancy.StartupOptions) {
        self.client = client
        self.tenancy = tenancy
        self.startup = startup
    }

    func willBootAsync(_ application: Application) async throws {
        let (client, tenancy) = (client, tenancy)
        running.withLock {
            $0 = Task {
                await withDiscardingTaskGroup { group in
                    group.addTask { await client.run() }
                    group.addTask { await tenancy.run() }   // listens for other processes' changes
                }
            }
        }
    }

    func didBootAsync(_ application: Application) async throws {
        // Migrates the fleet; a tenant that fails is refused with 503 until it is migrated.
        try await tenancy.prepareForServing(startup)
    }

    func shutdownAsync(_ application: Application) async {
        let task = running.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

struct TenancyKey: StorageKey {
    typealias Value = Tenancy
}

extension Application {
    /// The application's `Tenancy`, set by ``configure(_:database:tenancy:startup:)``.
    public var tenancy: Tenancy {
        get {
            guard let tenancy = storage[TenancyKey.self] else { fatalError("app.tenancy is set by configure(_:database:tenancy:startup:)") }
            return tenancy
        }
        set { storage[TenancyKey.self] = newValue }
    }
}
