public import Hummingbird
import HTTPTypes
public import Logging
public import Tenancy

/// The HTTP answer to a tenant that cannot be served. The body names the situation in words a
/// client can act on; it never holds SQL, a schema name or the registry's message.
public enum TenantErrorMapping {
    /// How long a client should wait before retrying a tenant that is being set up or upgraded.
    static let retryAfterSeconds = 5

    /// The status for `error`. Errors that are the server's fault (5xx) are logged with their
    /// cause; the client gets a generic body.
    public static func httpError(for error: TenancyError, logger: Logger) -> HTTPError {
        switch error.code {
        case .invalidSlug, .tenantNotFound:
            return HTTPError(.notFound, message: "no such tenant")
        case .tenantDeleted:
            return HTTPError(.gone, message: "this tenant was deleted")
        case .tenantSuspended:
            return HTTPError(.forbidden, message: "this tenant is suspended")
        case .provisioningInProgress:
            return retryLater("this tenant is being set up")
        case .migrationPending:
            logger.warning("tenant refused: its schema is behind this release's migration set", metadata: ["error": "\(error)"])
            return retryLater("this tenant is being upgraded")
        default:
            logger.error("tenant could not be served", metadata: ["error": "\(error)"])
            return HTTPError(.serviceUnavailable, message: "this tenant is not available")
        }
    }

    private static func retryLater(_ message: String) -> HTTPError {
        HTTPError(.serviceUnavailable, headers: [.retryAfter: "\(retryAfterSeconds)"], message: message)
    }
}
