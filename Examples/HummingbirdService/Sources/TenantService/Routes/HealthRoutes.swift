public import Hummingbird
public import Tenancy

/// Probes for an orchestrator: `/health` answers while the process runs; `/ready` only while
/// change announcements reach this replica (otherwise it could serve a tenant another process
/// just suspended, for up to the directory's short unconfirmed time to live).
public struct HealthRoutes: Sendable {
    let tenancy: Tenancy

    public init(tenancy: Tenancy) {
        self.tenancy = tenancy
    }

    public func add(to router: Router<AppRequestContext>) {
        router.get("health") { _, _ in HTTPResponse.Status.ok }
        router.get("ready") { _, _ in
            guard tenancy.directory.isListeningForChanges else {
                throw HTTPError(.serviceUnavailable, message: "not listening for tenant changes yet")
            }
            return HTTPResponse.Status.ok
        }
    }
}
