import Foundation
import Tenancy

/// Scenario 4: the latency of `create` for N tenants claimed from warm spares, and for N
/// tenants provisioned with no spare available, one at a time, with the registry in `store`.
enum OnboardingScenario {
    static func run(_ context: BenchContext, store: BenchStore) async throws -> ScenarioResult {
        let count = context.tenants
        let prefix = "bench_onboard_"
        context.note("onboarding (\(store.rawValue) registry): filling \(count) spares")
        let registry = try await context.registryLocation(store, name: "onboarding")
        let (spareFill, fromSpares, withoutSpares) = try await context.withTenancy(
            schemaPrefix: prefix, registry: registry, connections: context.concurrency + 1
        ) { tenancy in
            let spareFill = try await measure {
                let spares = try await tenancy.fillSpares(count: count, concurrency: context.concurrency)
                guard spares.count == count else { throw BenchError("\(spares.count) spares ready, not \(count)") }
            }
            context.note("onboarding (\(store.rawValue) registry): \(count) tenants from spares")
            let fromSpares = try await onboard(tenancy, slugPrefix: "spare", count: count, expecting: .claimedSpare)
            context.note("onboarding (\(store.rawValue) registry): \(count) tenants with no spare left")
            let withoutSpares = try await onboard(tenancy, slugPrefix: "fresh", count: count, expecting: .provisioned)
            return (spareFill, fromSpares, withoutSpares)
        }
        try await context.dropSchemas(prefix: prefix)
        try await context.dropSchemas(prefix: BenchStore.schemaPrefix)

        var result = ScenarioResult(store == .sqlite ? "onboarding" : "onboarding_postgres")
        result.record("spare_fill_per_second", "spares filled, concurrency \(context.concurrency)", Double(count) / spareFill.seconds, unit: "spares/s")
        result.record("spare_p50_ms", "from a spare, p50", fromSpares.median, unit: "ms")
        result.record("spare_p99_ms", "from a spare, p99", fromSpares.percentile(99), unit: "ms")
        result.record("spare_max_ms", "from a spare, max", fromSpares.maximum, unit: "ms")
        result.record("provisioned_p50_ms", "no spare (baseline), p50", withoutSpares.median, unit: "ms")
        result.record("provisioned_p99_ms", "no spare (baseline), p99", withoutSpares.percentile(99), unit: "ms")
        result.record("provisioned_max_ms", "no spare (baseline), max", withoutSpares.maximum, unit: "ms")
        result.record("p50_speedup", "no spare ÷ from a spare, p50", withoutSpares.median / fromSpares.median, unit: "×")
        switch store {
        case .sqlite:
            result.target("spare_p50_ms", .atMost, 5)
            result.target("spare_p99_ms", .atMost, 20)
        case .postgres:
            result.target("spare_p50_ms", .atMost, 3)
            result.target("spare_p99_ms", .atMost, 10)
        }
        return result
    }

    /// Creates `count` tenants one at a time and returns each `create`'s latency in ms.
    private static func onboard(_ tenancy: Tenancy, slugPrefix: String, count: Int, expecting outcome: OnboardingReport.Outcome) async throws -> Samples {
        var samples = Samples()
        for index in 0..<count {
            let start = ContinuousClock.now
            let report = try await tenancy.create("\(slugPrefix)-\(index)")
            samples.append((ContinuousClock.now - start).milliseconds)
            guard report.outcome == outcome else {
                throw BenchError("\(slugPrefix)-\(index) was \(report.outcome.rawValue), not \(outcome.rawValue)")
            }
        }
        return samples
    }
}
