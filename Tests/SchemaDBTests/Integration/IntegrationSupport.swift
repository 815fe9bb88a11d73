import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Testing

/// Integration tests run when a server is configured; in CI a missing server fails this test.
@Suite struct TestServerTests {
    @Test func aServerIsConfiguredWhenRunningInCI() {
        if TestPostgres.isCI {
            #expect(TestPostgres.isConfigured, "CI is set but neither DATABASE_URL nor POSTGRES_HOSTNAME is: start a server with scripts/test")
        }
    }
}

/// Runs `body` with a pool on the test server and a fresh schema of its own.
/// - Parameter ownDatabase: Put the schema in a database of its own, for a test that runs
///   `CREATE INDEX CONCURRENTLY`: it waits for every older transaction in its database,
///   including those other tests hold open on purpose.
func withTestSchema(
    ownDatabase: Bool = false,
    logger: Logger = Logger(label: "schemadb.tests", factory: { _ in SwiftLogNoOpLogHandler() }),
    configure: (inout DatabaseConfig) -> Void = { _ in },
    _ body: (DatabasePool, SchemaDatabase) async throws -> Void
) async throws {
    var config = try TestPostgres.makeTestConfiguration()
    configure(&config)
    guard ownDatabase else {
        return try await TestPostgres.withPool(configuration: config, logger: logger) { pool in
            try await TestPostgres.withTemporarySchema(pool: pool) { db in try await body(pool, db) }
        }
    }
    try await TestPostgres.withPool(configuration: config) { admin in
        try await TestPostgres.withTemporaryDatabase(pool: admin) { own in
            try await TestPostgres.withPool(configuration: own, logger: logger) { pool in
                try await TestPostgres.withTemporarySchema(pool: pool) { db in try await body(pool, db) }
            }
        }
    }
}

/// A directory of migration files for one test, removed afterwards.
struct MigrationDirectory {
    let url: URL

    init(_ files: [String: String]) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("schemadb-migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        for (name, content) in files { try write(name, content) }
    }

    func write(_ name: String, _ content: String) throws {
        try content.write(to: url.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    func load() throws -> MigrationSet { try MigrationSet(directory: url) }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

let integration = Testing.ConditionTrait.enabled(if: TestPostgres.isConfigured, "needs DATABASE_URL or POSTGRES_HOSTNAME")
