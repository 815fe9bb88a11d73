import Foundation
public import Hummingbird
import SchemaDB

/// A tenant's customer accounts.
public struct AccountRoutes: Sendable {
    struct Account: Codable, ResponseEncodable {
        var id: Int64
        var email: String
        var name: String
        var plan: String
        var createdAt: Date
    }

    struct NewAccount: Decodable {
        var email: String
        var name: String
        var plan: String?
    }

    public init() {}

    public func add(to group: RouterGroup<TenantContext>) {
        group.get("accounts", use: list)
        group.post("accounts", use: create)
    }

    @Sendable func list(_ request: Request, context: TenantContext) async throws -> [Account] {
        try await context.database.fetchAll(
            "SELECT id, email, name, plan, created_at FROM {{tables.accounts}} ORDER BY id LIMIT 100", as: Account.self)
    }

    @Sendable func create(_ request: Request, context: TenantContext) async throws -> EditedResponse<Account> {
        let input = try await request.decode(as: NewAccount.self, context: context)
        guard input.email.contains("@"), !input.name.isEmpty else {
            throw HTTPError(.unprocessableContent, message: "an account needs an email address and a name")
        }
        do {
            let account = try await context.database.fetchOne(
                """
                INSERT INTO {{tables.accounts}} (email, name, plan) VALUES ($1, $2, $3)
                RETURNING id, email, name, plan, created_at
                """, input.email, input.name, input.plan ?? "free", as: Account.self)
            guard let account else { throw HTTPError(.internalServerError, message: "internal error") }
            return EditedResponse(status: .created, response: account)
        } catch let error as SchemaDBError where error.code == .uniqueViolation {
            throw HTTPError(.conflict, message: "an account with this email address exists")
        } catch let error as SchemaDBError where error.sqlState == "23514" {
            throw HTTPError(.unprocessableContent, message: "the plan must be free, team or enterprise")
        }
    }
}
