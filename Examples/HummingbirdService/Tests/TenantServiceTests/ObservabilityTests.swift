import Hummingbird
import HummingbirdTesting
import Metrics
import Prometheus
import Tenancy
import Testing
@testable import TenantService

/// swift-metrics of this test process, bootstrapped once, into the registry `/metrics` serves.
enum ProcessMetrics {
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()
}

@Suite(integration, .timeLimit(.minutes(3)))
struct ObservabilityTests {
    @Test func metricsAreServedWithRouteLabelsAndNoLabelPerTenant() async throws {
        try await ServiceFixture.run { fixture in
            let slugs = ["metric-a", "metric-b", "metric-c"]
            for slug in slugs { try await fixture.operatorTenancy.create(slug) }
            try await fixture.replica(metrics: ProcessMetrics.registry).test(.router) { client async throws in
                for slug in slugs + slugs { #expect(try await client.send("/accounts", tenant: slug).status == .ok) }
                let response = try await client.send("/metrics")
                #expect(response.status == .ok)
                let text = response.text
                #expect(text.contains("tenancy_directory_hits") && text.contains("tenancy_directory_misses"))
                #expect(text.contains("schemadb_query_duration"))
                #expect(text.contains("/accounts"), "request metrics are labelled by route")
                for slug in slugs { #expect(!text.contains(slug), "no label names a tenant") }
                #expect(!text.contains(fixture.schemaPrefix))
            }
        }
    }
}
