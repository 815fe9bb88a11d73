public import Hummingbird
import HTTPTypes
import Logging
public import Tenancy

/// Sign-up: a new tenant, onboarded from a warm spare schema when one is ready (no DDL on
/// the request's path), provisioned otherwise.
public struct SignupRoutes: Sendable {
    struct Signup: Decodable {
        var slug: String
        var name: String?
    }

    struct SignedUp: Codable, ResponseEncodable {
        var slug: String
        var name: String?
        /// `claimed_spare`, `provisioned` or `adopted`.
        var onboarding: String
    }

    let tenancy: Tenancy

    public init(tenancy: Tenancy) {
        self.tenancy = tenancy
    }

    public func add(to router: Router<AppRequestContext>) {
        router.post("tenants", use: signUp)
    }

    @Sendable func signUp(_ request: Request, context: AppRequestContext) async throws -> EditedResponse<SignedUp> {
        let input = try await request.decode(as: Signup.self, context: context)
        do {
            let report = try await tenancy.create(input.slug, displayName: input.name)
            guard report.outcome != .alreadyActive else {
                throw HTTPError(.conflict, message: "this name is taken")
            }
            context.logger.info("tenant signed up", metadata: ["tenant": "\(input.slug)", "onboarding": "\(report.outcome.rawValue)"])
            return EditedResponse(
                status: .created,
                response: SignedUp(slug: report.tenant.slug.rawValue, name: report.tenant.displayName, onboarding: report.outcome.rawValue))
        } catch let error as TenancyError {
            switch error.code {
            case .invalidSlug:
                throw HTTPError(.unprocessableContent, message: "a name is 2 to 50 lowercase letters, digits and '-', starting with a letter")
            case .slugTaken:
                throw HTTPError(.conflict, message: "this name is taken")
            case .slugRecentlyReleased:
                throw HTTPError(.conflict, headers: [.retryAfter: "60"], message: "this name was given up moments ago; try again later")
            default:
                throw error
            }
        }
    }
}
