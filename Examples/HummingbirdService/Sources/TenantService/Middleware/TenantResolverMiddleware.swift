public import Hummingbird
import Logging
import HTTPTypes
import SchemaDB
public import Tenancy

/// Where a request names its tenant.
public enum TenantSource: Sendable, Hashable {
    /// A header, such as `X-Tenant: acme`.
    case header(String)
    /// The first label of the host under a domain: `acme.example.com` under `example.com`.
    case subdomain(of: String)
    /// A path parameter of the route group, such as `:tenant` in `/t/:tenant/…`.
    case pathParameter(String)

    /// The route prefix the tenant routes are mounted under.
    var routePrefix: String {
        if case .pathParameter(let name) = self { return "t/:\(name)" }
        return ""
    }

    func slug(in request: Request, context: some RequestContext) -> String? {
        switch self {
        case .header(let name):
            return HTTPField.Name(name).flatMap { request.headers[$0] }
        case .subdomain(let domain):
            return request.head.authority.flatMap { Self.tenantLabel(in: $0, under: domain) }
        case .pathParameter(let name):
            return context.parameters.get(name)
        }
    }
}

extension TenantSource {
    /// The single label before `.domain` in `authority` (a host, with or without a port):
    /// `acme` in `Acme.example.com:8080`; `nil` for the bare domain, deeper names and other hosts.
    static func tenantLabel(in authority: String, under domain: String) -> String? {
        var host = authority.lowercased()
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]") { host = String(host[..<colon]) }
        if host.hasSuffix(".") { host.removeLast() }
        let suffix = "." + domain.lowercased()
        guard host.hasSuffix(suffix) else { return nil }
        let label = host.dropLast(suffix.count)
        return label.isEmpty || label.contains(".") ? nil : String(label)
    }
}

/// Resolves the request's tenant through the `Tenancy` directory (a cache hit after the first
/// request: no query) and puts it in the context. A request for a tenant that cannot be served
/// gets the status ``TenantErrorMapping`` gives, and nothing else: no SQL, no schema name.
public struct TenantResolverMiddleware<Context: TenantRequestContext>: RouterMiddleware {
    let tenancy: Tenancy
    let source: TenantSource

    public init(tenancy: Tenancy, source: TenantSource) {
        self.tenancy = tenancy
        self.source = source
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let slug = source.slug(in: request, context: context) else {
            throw HTTPError(.notFound, message: "no tenant named in the request")
        }
        let database: SchemaDatabase
        do {
            database = try await tenancy.database(for: slug)
        } catch let error as TenancyError {
            throw TenantErrorMapping.httpError(for: error, logger: context.logger)
        }
        var context = context
        context.tenant = ResolvedTenant(slug: slug, database: database)
        context.logger[metadataKey: "tenant"] = .string(slug)
        return try await next(request, context)
    }
}
