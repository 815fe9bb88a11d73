import Foundation
import SchemaDB
import Testing

/// The benchmark executable, run with tiny sizes so that it cannot rot unnoticed. Figures from
/// a debug build mean nothing; these tests check the shape of the report and the errors.
@Suite(integration, .timeLimit(.minutes(5)))
struct TenancyBenchTests {
    static let binary = CLIFixture.builtExecutable("tenancy-bench")
    static let repositoryMigrations = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tenant-migrations").path

    @Test func everyScenarioReportsItsFiguresAndTargetsInOneJSONDocument() async throws {
        try await CLIFixture.run { cli in
            let output = cli.directory.appendingPathComponent("bench.json")
            let result = try await cli.start(arguments: [
                "--tenants", "3", "--concurrency", "2", "--query-calls", "500", "--directory-tenants", "100", "--registry-rows", "500", "--invalidation-rounds", "2", "--move-rows", "200",
                "--scale", "--scale-tenants", "4", "--migrations", Self.repositoryMigrations,
                "--work-dir", cli.directory.appendingPathComponent("work").path, "--output", output.path,
            ], executable: Self.binary).result()
            try #require(result.status == 0, "tenancy-bench exited \(result.status): \(result.stderr)")

            let report = try result.object()
            let scenarios = try #require(report["scenarios"] as? [String: [String: Double]])
            #expect(Set(scenarios.keys) == [
                "provision", "fleet", "query", "onboarding", "onboarding_postgres", "claimers_sqlite", "claimers_postgres",
                "invalidation_sqlite", "invalidation_postgres", "directory", "registry", "move", "scale",
            ])
            #expect(scenarios["move"]?["large_offline_seconds"] ?? 0 > 0 && scenarios["move"]?["small_psql_copy_seconds"] ?? 0 > 0)
            #expect(scenarios["provision"]?["psql_tenants_per_second"] ?? 0 > 0)
            #expect(scenarios["provision"]?["concurrent_tenants_per_second"] ?? 0 > 0)
            #expect(scenarios["fleet"]?["concurrent_tenants_per_second"] ?? 0 > 0)
            #expect(scenarios["query"]?["calls"] == 500)
            #expect(scenarios["query"]?["handle_median_us"] ?? 0 > 0)
            #expect(scenarios["onboarding"]?["spare_p99_ms"] ?? 0 > 0)
            #expect(scenarios["directory"]?["cached_tenants"] == 100)
            #expect(scenarios["registry"]?["rows"] == 500)
            #expect(scenarios["registry"]?["postgres_list_ms"] ?? 0 > 0)
            #expect(scenarios["onboarding_postgres"]?["spare_p99_ms"] ?? 0 > 0)
            for store in ["sqlite", "postgres"] {
                #expect(scenarios["claimers_\(store)"]?["claimed_twice"] == 0)
                #expect(scenarios["claimers_\(store)"]?["claims"] ?? 0 >= 8)
                #expect(scenarios["invalidation_\(store)"]?["changes"] == 8)
                #expect(scenarios["invalidation_\(store)"]?["p99_ms"] ?? 0 > 0)
            }
            #expect(scenarios["scale"]?["at_new_level"] == 4)

            let targets = try #require(report["targets"] as? [[String: Any]])
            #expect(targets.count == 19)
            #expect(targets.allSatisfy { $0["met"] is Bool && $0["limit"] is Double && $0["value"] is Double })
            let parameters = try #require(report["parameters"] as? [String: Any])
            #expect(parameters["tenants"] as? Int == 3)
            #expect(parameters["build"] as? String == "debug")
            let postgres = try #require(report["postgres"] as? [String: Any])
            #expect((postgres["version"] as? String)?.hasPrefix("15") == true)
            #expect((report["machine"] as? [String: Any])?["cores"] as? Int ?? 0 >= 1)

            #expect(try String(contentsOf: output, encoding: .utf8) == result.stdout)
            #expect(result.stderr.contains("targets"))
            let leftovers = try await cli.pool.database(schema: nil).fetchValue(
                "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'bench_')", as: Int.self)
            #expect(leftovers == 0)
        }
    }

    @Test func badOptionsAndAnUnreachableServerGetOneLineErrors() async throws {
        try await CLIFixture.run { cli in
            let invalid = try await cli.start(arguments: ["--tenants", "0"], executable: Self.binary).result()
            #expect(invalid.status != 0)
            #expect(invalid.stderr.contains("--tenants must be at least 1"))
            #expect(invalid.stdout.isEmpty)

            let unreachable = try await cli.start(arguments: [
                "--database-url", "postgres://bench:secret-password@127.0.0.1:1/postgres", "--migrations", Self.repositoryMigrations,
                "--scenarios", "registry",
            ], executable: Self.binary).result()
            #expect(unreachable.status == 1)
            let lines = unreachable.stderr.split(separator: "\n").filter { $0.contains("error") }
            #expect(lines.count == 1, "\(unreachable.stderr)")
            #expect(!unreachable.stderr.contains("secret-password"))
            #expect(unreachable.stdout.isEmpty)
        }
    }
}
