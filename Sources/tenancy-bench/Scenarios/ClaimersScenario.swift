import Foundation
import Tenancy

/// Scenario: eight replicas onboarding at once from one pool of spares, each with its own
/// connections and its own handle on the registry. No spare may go to two tenants.
enum ClaimersScenario {
    static let claimers = 8

    static func run(_ context: BenchContext, store: BenchStore) async throws -> ScenarioResult {
        let spares = max(claimers, context.tenants - context.tenants % claimers)
        let prefix = "bench_claim_"
        let registry = try await context.registryLocation(store, name: "claimers")
        context.note("claimers (\(store.rawValue) registry): filling \(spares) spares, then \(claimers) replicas claim them at once")
        try await context.withTenancy(schemaPrefix: prefix, registry: registry, connections: context.concurrency + 1) { tenancy in
            _ = try await tenancy.fillSpares(count: spares, concurrency: context.concurrency)
        }
        var onboarded: [(report: OnboardingReport, milliseconds: Double)] = []
        let elapsed = try await measure {
            onboarded = try await withThrowingTaskGroup(of: [(report: OnboardingReport, milliseconds: Double)].self) { group in
                for claimer in 0..<claimers {
                    group.addTask {
                        try await context.withTenancy(schemaPrefix: prefix, registry: registry, connections: 2) { replica in
                            var claims: [(report: OnboardingReport, milliseconds: Double)] = []
                            for index in 0..<(spares / claimers) {
                                let start = ContinuousClock.now
                                let report = try await replica.create("replica-\(claimer)-\(index)")
                                claims.append((report, (ContinuousClock.now - start).milliseconds))
                            }
                            return claims
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
        }
        let claimedTwice = onboarded.count - Set(onboarded.map(\.report.tenant.schema)).count
        let claimed = onboarded.filter { $0.report.outcome == .claimedSpare }.count
        let latencies = Samples(onboarded.map(\.milliseconds))
        try await context.dropSchemas(prefix: prefix)
        try await context.dropSchemas(prefix: BenchStore.schemaPrefix)

        var result = ScenarioResult("claimers_\(store.rawValue)")
        result.record("claims", "spares claimed by \(claimers) replicas at once, of \(spares)", Double(claimed), unit: "claims")
        result.record("claimed_twice", "spares handed to two tenants", Double(claimedTwice), unit: "spares")
        result.record("claims_per_second", "claims per second, all replicas", Double(spares) / elapsed.seconds, unit: "claims/s")
        result.record("claim_p50_ms", "one claim, p50", latencies.median, unit: "ms")
        result.record("claim_p99_ms", "one claim, p99", latencies.percentile(99), unit: "ms")
        result.target("claimed_twice", .atMost, 0)
        result.target("claims", .atLeast, Double(spares))
        return result
    }
}
