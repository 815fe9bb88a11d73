import Foundation
import PostgresNIO
public import SchemaDB
public import Tenancy
public import Vapor

struct Account: Content {
    var id: Int64
    var email: String
    var name: String
}

struct NewAccount: Content {
    var email: String
    var name: String
}

/// Sets up Tenancy in a Vapor 4 application: one `PostgresClient` shared with Tenancy, run by a
/// lifecycle handler, and the tenant routes behind ``TenantMiddleware``.
public func configure(_ app: Application, database: DatabaseConfig, tenancy configuration: Tenancy.Configuration,
                      startup: Tenancy.StartupOptions = .init()) throws {
    var configuration = configuration
    configuration.createsRegistry = false          // a server never starts on an empty registry
    let client = PostgresClient(configuration: try database.makePostgresClientConfiguration(), backgroundLogger: app.logger)
    let tenancy = try Tenancy(client: client, maximumConnections: 20, configuration: configuration, logger: app.logger)
    app.tenancy = tenancy
    app.lifecycle.use(TenancyLifecycle(client: client, tenancy: tenancy, startup: startup))
    // Vapor's default error middleware shows an error's description outside production; this
    // one never does, so no SQL or schema name reaches a client.
    app.middleware = Middlewares()
    app.middleware.use(ErrorMiddleware.default(environment: .production))

    let tenantRoutes = app.grouped(TenantMiddleware())
    tenantRoutes.get("accounts") { request async throws -> [Account] in
        try await request.tenantDatabase.fetchAll("SELECT id, email, name FROM {{tables.accounts}} ORDER BY id LIMIT 100", as: Account.self)
    }
    tenantRoutes.post("accounts") { request async throws -> Response in
        let input = try request.content.decode(NewAccount.self)
        do {
            let id = try await request.tenantDatabase.insertReturningID(
                "INSERT INTO {{tables.accounts}} (email, name) VALUES ($1, $2)", input.email, input.name, as: Int64.self)
            return try await Account(id: id, email: input.email, name: input.name).encodeResponse(status: .created, for: request)
        } catch let error as SchemaDBError where error.code == .uniqueViolation {
            throw Abort(.conflict, reason: "an account with this email address exists")
        }
    }
}
