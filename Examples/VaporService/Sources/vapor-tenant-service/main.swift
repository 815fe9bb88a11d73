import SchemaDB
import Tenancy
import Vapor
import VaporTenantService

var environment = try Environment.detect()
try LoggingSystem.bootstrap(from: &environment)
let app = try await Application.make(environment)
do {
    let database = try DatabaseConfig.fromEnvironment()
    // TENANCY_REGISTRY, TENANCY_REGISTRY_SCHEMA, TENANCY_SCHEMA_PREFIX, TENANCY_MIGRATIONS, as tenantctl reads them.
    try configure(app, database: database, tenancy: try Tenancy.Configuration.fromEnvironment(database: database))
    try await app.execute()
} catch {
    app.logger.critical("vapor-tenant-service cannot start: \(error)")
    try? await app.asyncShutdown()
    exit(1)
}
try await app.asyncShutdown()
