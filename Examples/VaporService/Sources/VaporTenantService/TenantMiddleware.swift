public import SchemaDB
import Tenancy
public import Vapor

struct TenantDatabaseKey: StorageKey {
    typealias Value = SchemaDatabase
}

extension Request {
    /// The handle of the request's tenant, put in the request's storage by ``TenantMiddleware``.
    public var tenantDatabase: SchemaDatabase {
        get throws {
            guard let database = storage[TenantDatabaseKey.self] else {
                // A tenant route was registered outside the group with the middleware.
                throw Abort(.internalServerError)
            }
            return database
        }
    }
}

/// Resolves the tenant named in the `X-Tenant` header through `app.tenancy` (a cache hit after
/// the first request) and stores its handle in the request. A tenant that cannot be served
/// gets its status and a body with no SQL, no schema name.
public struct TenantMiddleware: AsyncMiddleware {
    public init() {}

    public func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard let slug = request.headers.first(name: "X-Tenant") else { throw Abort(.notFound, reason: "no such tenant") }
        do {
            request.storage[TenantDatabaseKey.self] = try await request.application.tenancy.database(for: slug)
        } catch let error as TenancyError {
            throw Self.abort(for: error, logger: request.logger)
        }
        request.logger[metadataKey: "tenant"] = .string(slug)
        return try await next.respond(to: request)
    }

    static func abort(for error: TenancyError, logger: Logger) -> Abort {
        switch error.code {
        case .invalidSlug, .tenantNotFound: return Abort(.notFound, reason: "no such tenant")
        case .tenantDeleted: return Abort(.gone, reason: "this tenant was deleted")
        case .tenantSuspended: return Abort(.forbidden, reason: "this tenant is suspended")
        case .provisioningInProgress, .migrationPending:
            logger.warning("tenant not ready", metadata: ["error": "\(error)"])
            return Abort(.serviceUnavailable, headers: ["Retry-After": "5"], reason: "this tenant is not ready; retry shortly")
        default:
            logger.error("tenant could not be served", metadata: ["error": "\(error)"])
            return Abort(.serviceUnavailable, reason: "this tenant is not available")
        }
    }
}
