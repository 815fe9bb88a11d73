public import Hummingbird
public import Logging
public import PostgresNIO
public import Prometheus
import SchemaDB
public import ServiceLifecycle
public import Tenancy

/// The service: the app's `PostgresClient`, `Tenancy` over it, and the HTTP routes, run as
/// services of one `ServiceGroup` (the client first).
public enum ServiceApplication {
    /// The router of the service: probes, sign-up, and the tenant routes behind the resolver.
    /// - Parameters:
    ///   - metrics: The registry swift-metrics was bootstrapped with, served at `/metrics`.
    ///   - configure: Adds routes of the host's own, behind the error middleware.
    ///   - configureTenantRoutes: Adds tenant routes of the host's own, behind the resolver.
    public static func makeRouter(tenancy: Tenancy, tenantSource: TenantSource, metrics: PrometheusCollectorRegistry? = nil,
                                  configure: (Router<AppRequestContext>) -> Void = { _ in },
                                  configureTenantRoutes: (RouterGroup<TenantContext>) -> Void = { _ in }) -> Router<AppRequestContext> {
        let router = Router(context: AppRequestContext.self)
        HealthRoutes(tenancy: tenancy).add(to: router)
        if let metrics {
            router.get("metrics") { _, _ in metrics.emitToString() }
        }
        // Request metrics and spans are labelled by route ("/t/:tenant/accounts"), method and
        // status: never by tenant, so their number stays bounded with any number of tenants.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: TracingMiddleware())
        router.add(middleware: ServerErrorMiddleware())
        SignupRoutes(tenancy: tenancy).add(to: router)
        configure(router)
        let tenantRoutes = router.group(RouterPath(tenantSource.routePrefix))
            .add(middleware: TenantResolverMiddleware(tenancy: tenancy, source: tenantSource))
            .add(middleware: ServerErrorMiddleware())
            .group(context: TenantContext.self)
        AccountRoutes().add(to: tenantRoutes)
        InvoiceRoutes().add(to: tenantRoutes)
        configureTenantRoutes(tenantRoutes)
        return router
    }

    /// The application over the app's `client`, which it runs as its first service.
    /// - Throws: When the registry does not exist (``TenancyError/Code/registryNotFound``: create
    ///   it with `tenantctl init`) or the migration set cannot be read.
    /// - Parameters:
    ///   - metrics: The registry swift-metrics was bootstrapped with, served at `/metrics`.
    ///   - services: More services to run first, such as the OpenTelemetry exporter.
    ///   - configure: Adds routes of the host's own (see ``makeRouter(tenancy:tenantSource:metrics:configure:configureTenantRoutes:)``).
    ///   - configureTenantRoutes: Adds tenant routes of the host's own, behind the resolver.
    public static func make(settings: ServiceSettings, client: PostgresClient, logger: Logger, metrics: PrometheusCollectorRegistry? = nil,
                            services: [any Service] = [], configure: (Router<AppRequestContext>) -> Void = { _ in },
                            configureTenantRoutes: (RouterGroup<TenantContext>) -> Void = { _ in }) throws -> some ApplicationProtocol {
        let tenancy = try Tenancy(client: client, maximumConnections: settings.maximumConnections, configuration: settings.tenancy, logger: logger)
        var app = Application(
            router: makeRouter(tenancy: tenancy, tenantSource: settings.tenantSource, metrics: metrics, configure: configure,
                               configureTenantRoutes: configureTenantRoutes),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "tenant-service"),
            logger: logger)
        app.addServices(services)
        app.addServices(client, tenancy)
        let startup = settings.startup
        app.beforeServerStarts {
            // Migrates the fleet (or only checks it); a tenant that fails is refused with 503
            // until it is migrated, and the service starts.
            try await tenancy.prepareForServing(startup)
        }
        return app
    }

    /// The application with a `PostgresClient` of its own, built from the settings.
    public static func make(settings: ServiceSettings, logger: Logger, metrics: PrometheusCollectorRegistry? = nil,
                            services: [any Service] = []) throws -> some ApplicationProtocol {
        let client = PostgresClient(configuration: try settings.database.makePostgresClientConfiguration(), backgroundLogger: logger)
        return try make(settings: settings, client: client, logger: logger, metrics: metrics, services: services)
    }
}
