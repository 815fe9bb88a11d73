import Foundation
import SchemaDB
import Tenancy

/// Scenario 5: the cost of a directory cache hit with every tenant of a large registry cached,
/// and the memory each cached tenant takes.
enum DirectoryScenario {
    static let lookups = 1_000_000

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.directoryTenants
        let path = try context.freshRegistryPath("directory")
        context.note("directory: seeding \(count) tenants, caching them all, then \(lookups) lookups")
        try RegistrySeeder.seed(path: path, count: count, schemaPrefix: "bench_dir_")
        var directory = TenantDirectory.Configuration()
        directory.capacity = count
        directory.timeToLive = .seconds(3600)
        directory.refusesTenantsBehindMigrationSet = false  // seeded rows record no migration level
        return try await context.withTenancy(schemaPrefix: "bench_dir_", registryPath: path, connections: 1, directory: directory) { tenancy in
            let slugs = (0..<count).map(RegistrySeeder.slug).shuffled()
            let heapBefore = ProcessMemory.allocatedBytes
            let misses = try await measure {
                for slug in slugs { _ = try await tenancy.database(for: slug) }
            }
            let heapAfter = ProcessMemory.allocatedBytes
            let cached = tenancy.directory.statistics
            guard cached.cached == count, cached.misses == count else {
                throw BenchError("the directory cached \(cached.cached) of \(count) tenants after \(cached.misses) misses")
            }
            let rounds = max(1, lookups / count)
            var resolved = 0
            let hits = try await measure {
                for _ in 0..<rounds {
                    for slug in slugs {
                        if try await tenancy.database(for: slug).schema != nil { resolved += 1 }
                    }
                }
            }
            let after = tenancy.directory.statistics
            guard resolved == rounds * count, after.misses == count else {
                throw BenchError("\(after.misses - count) lookups missed the cache")
            }

            var result = ScenarioResult("directory")
            result.record("cached_tenants", "tenants cached", Double(count), unit: "tenants")
            result.record("miss_us", "miss: registry read + handle (baseline)", misses.microseconds / Double(count), unit: "µs")
            result.record("hit_ns", "hit", hits.nanoseconds / Double(rounds * count), unit: "ns")
            if let heapBefore, let heapAfter {
                result.record("bytes_per_cached_tenant", "heap per cached tenant", Double(heapAfter - heapBefore) / Double(count), unit: "bytes")
            }
            result.target("hit_ns", .atMost, 1_000)
            return result
        }
    }
}
