public import Hummingbird
import Logging
import Tenancy

/// Turns every error that is not already an HTTP answer into a 500 with a generic body, and
/// logs each 5xx with its cause, the route and the tenant: no failure is ever silent, and no
/// SQL, schema name or data value reaches a client. Mounted on the router and again behind the
/// tenant resolver, whose logger carries the tenant; a 5xx is logged once, by the innermost.
public struct ServerErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ReportedServerError {
            throw error
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            throw error
        } catch let error as HTTPError {
            throw report(error, cause: error.body ?? "", request, context)
        } catch let error as TenancyError {
            // A tenant refused outside the resolver, such as in sign-up.
            let mapped = TenantErrorMapping.httpError(for: error, logger: context.logger)
            guard mapped.status.code >= 500 else { throw mapped }
            throw report(mapped, cause: "\(error)", request, context)
        } catch {
            throw report(HTTPError(.internalServerError, message: "internal error"), cause: "\(error)", request, context)
        }
    }

    private func report(_ error: HTTPError, cause: String, _ request: Request, _ context: Context) -> ReportedServerError {
        let level: Logger.Level = error.status == .serviceUnavailable ? .warning : .error
        context.logger.log(level: level, "request failed", metadata: [
            "http.method": "\(request.method)", "http.route": "\(context.endpointPath ?? request.uri.path)",
            "http.status": "\(error.status.code)", "error": "\(cause)",
        ])
        return ReportedServerError(error: error)
    }
}

/// A 5xx already logged by an inner ``ServerErrorMiddleware``, passed through by the outer ones.
struct ReportedServerError: HTTPResponseError {
    let error: HTTPError
    var status: HTTPResponse.Status { error.status }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try error.response(from: request, context: context)
    }
}
