public import Foundation
public import Hummingbird
public import SchemaDB

/// The tenant a request is for, once resolved: its slug and its schema-scoped handle.
public struct ResolvedTenant: Sendable {
    /// The tenant's slug, as the request named it.
    public var slug: String
    /// The tenant's handle: every query runs in its schema, over the shared pool.
    public var database: SchemaDatabase
}

/// A request context that can carry the request's tenant, set by ``TenantResolverMiddleware``.
public protocol TenantRequestContext: RequestContext {
    /// The tenant, once resolved.
    var tenant: ResolvedTenant? { get set }
}

/// The application's request context.
public struct AppRequestContext: TenantRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var tenant: ResolvedTenant?
    public var requestDecoder: JSONDecoder { JSONCoding.decoder }
    public var responseEncoder: JSONEncoder { JSONCoding.encoder }

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.tenant = nil
    }
}

/// The context of routes that need a tenant: it always has one, so no handler can forget to
/// check. A route group of this context behind ``TenantResolverMiddleware`` is the only way
/// to reach tenant data.
public struct TenantContext: ChildRequestContext {
    public typealias ParentContext = AppRequestContext
    public var coreContext: CoreRequestContextStorage
    /// The request's tenant.
    public let tenant: ResolvedTenant
    public var requestDecoder: JSONDecoder { JSONCoding.decoder }
    public var responseEncoder: JSONEncoder { JSONCoding.encoder }

    public init(context: AppRequestContext) throws {
        guard let tenant = context.tenant else {
            // A route of this context was mounted without the resolver in front of it.
            throw HTTPError(.internalServerError, message: "internal error")
        }
        // The parent's storage: route parameters, and the logger with the tenant's metadata.
        self.coreContext = context.coreContext
        self.tenant = tenant
    }

    /// The tenant's database handle.
    public var database: SchemaDatabase { tenant.database }
}

/// The API's JSON: snake_case keys and ISO 8601 dates.
enum JSONCoding {
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
}
