import Foundation
import Hummingbird
import Logging
import Metrics
import OTel
import Prometheus
import ServiceLifecycle
import Tracing
import TenantService

var logger = Logger(label: "tenant-service")
logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
do {
    let settings = try ServiceSettings.fromEnvironment()
    // Metrics for Prometheus at /metrics. Spans to an OpenTelemetry collector over OTLP/HTTP
    // when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, else to
    // this log at debug level (LOG_LEVEL=debug).
    let metrics = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
    let environment = ProcessInfo.processInfo.environment
    var services: [any Service] = []
    if environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil || environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil {
        var observability = OTel.Configuration.default
        observability.serviceName = "tenant-service"
        observability.metrics.enabled = false
        observability.logs.enabled = false
        observability.traces.exporter = .otlp
        observability.traces.otlpExporter.protocol = .httpProtobuf
        services.append(try OTel.bootstrap(configuration: observability))
    } else {
        InstrumentationSystem.bootstrap(SpanLogger(logger: logger))
    }
    let app = try ServiceApplication.make(settings: settings, logger: logger, metrics: metrics, services: services)
    try await app.runService()
} catch {
    logger.critical("tenant-service cannot start: \(error)")
    exit(1)
}
