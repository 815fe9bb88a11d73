// The service with two more routes, for scripts/bench-service. GET /raw/invoices/open runs the
// SQL of GET /invoices/open on the app's PostgresClient, with the tenant's schema written in
// (RAW_ROUTE_SCHEMA) and no Tenancy on the path. GET /invoices/open/rows is the tenant route
// (resolver, directory, tenant handle) decoding its rows as tuples, as the raw route does: the
// two compare Tenancy's cost and nothing else, and /invoices/open adds the Decodable decoding.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import SchemaDB
import TenantService

var logger = Logger(label: "tenant-service-bench")
logger.logLevel = .warning
do {
    let settings = try ServiceSettings.fromEnvironment()
    guard let schemaName = ProcessInfo.processInfo.environment["RAW_ROUTE_SCHEMA"] else {
        throw SettingsError("RAW_ROUTE_SCHEMA is not set; name the schema of the tenant the raw route reads")
    }
    let schema = try SQLIdentifier(schemaName)
    let client = PostgresClient(configuration: try settings.database.makePostgresClientConfiguration(), backgroundLogger: logger)
    let sql = "SELECT id, number, account_id, issued_on, total_cents FROM \(schema.quoted).\"open_invoices\" ORDER BY id LIMIT 100"
    let app = try ServiceApplication.make(settings: settings, client: client, logger: logger, configure: { router in
        router.get("raw/invoices/open") { _, context -> [OpenInvoice] in
            var invoices: [OpenInvoice] = []
            for try await (id, number, accountID, issuedOn, total) in try await client.query(PostgresQuery(unsafeSQL: sql), logger: context.logger)
                .decode((Int64, String, Int64, Date, Int64).self) {
                invoices.append(OpenInvoice(id: id, number: number, accountId: accountID, issuedOn: issuedOn, totalCents: total))
            }
            return invoices
        }
    }, configureTenantRoutes: { tenantRoutes in
        tenantRoutes.get("invoices/open/rows") { _, context -> [OpenInvoice] in
            let rows = try await context.database.fetchAll(
                "SELECT id, number, account_id, issued_on, total_cents FROM {{tables.open_invoices}} ORDER BY id LIMIT 100")
            return try rows.map { row in
                let (id, number, accountID, issuedOn, total) = try row.decode((Int64, String, Int64, Date, Int64).self)
                return OpenInvoice(id: id, number: number, accountId: accountID, issuedOn: issuedOn, totalCents: total)
            }
        }
    })
    try await app.runService()
} catch {
    logger.critical("tenant-service-bench cannot start: \(error)")
    exit(1)
}
