import Foundation
public import Logging
public import SchemaDB

/// The PostgreSQL server that integration tests run against, configured from the environment.
///
/// `DATABASE_URL` when set, otherwise `POSTGRES_HOSTNAME`, `POSTGRES_PORT`, `POSTGRES_USER`,
/// `POSTGRES_PASSWORD` and `POSTGRES_DB`. Gate integration tests with
/// `.enabled(if: TestPostgres.isConfigured)`, and fail (never skip) when `CI` is set and no
/// server is configured.
public enum TestPostgres {
    /// Whether a test server is configured in the environment.
    public static var isConfigured: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["DATABASE_URL"].map { !$0.isEmpty } ?? false
            || environment["POSTGRES_HOSTNAME"].map { !$0.isEmpty } ?? false
    }

    /// Whether the tests run in CI, where a missing server is a failure.
    public static var isCI: Bool {
        ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "0" && $0 != "false" } ?? false
    }

    /// The test server's configuration: small pool, no retries, short timeouts.
    public static func makeTestConfiguration() throws -> DatabaseConfig {
        let environment = ProcessInfo.processInfo.environment
        var config: DatabaseConfig
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            config = try DatabaseConfig(url: url)
        } else {
            config = DatabaseConfig()
            config.host = environment["POSTGRES_HOSTNAME"] ?? "localhost"
            if let port = environment["POSTGRES_PORT"].flatMap(Int.init) { config.port = port }
            config.user = environment["POSTGRES_USER"] ?? "postgres"
            config.password = environment["POSTGRES_PASSWORD"]
            config.database = environment["POSTGRES_DB"]
        }
        config.maximumConnections = 8
        config.retry = .none
        config.tlsMode = config.tlsMode == .prefer ? .disable : config.tlsMode
        return config
    }

    /// A unique name for a throwaway schema or database: `t_` and 16 random hex digits.
    public static func makeUniqueName(prefix: String = "t") -> String {
        prefix + "_" + String(UInt64.random(in: .min ... .max), radix: 16)
    }

    /// Runs `body` with a pool on the test server.
    public static func withPool<Result: Sendable>(
        configuration: DatabaseConfig? = nil,
        logger: Logger = Logger(label: "schemadb.tests", factory: { _ in SwiftLogNoOpLogHandler() }),
        _ body: (DatabasePool) async throws -> Result
    ) async throws -> Result {
        try await DatabasePool.withPool(configuration: try configuration ?? makeTestConfiguration(), logger: logger, body)
    }

    /// Runs `body` with a handle on a new, empty schema named `t_<random>`, dropped afterwards
    /// with everything in it, so tests can run in parallel without seeing each other's tables.
    public static func withTemporarySchema<Result: Sendable>(
        pool: DatabasePool,
        _ body: (SchemaDatabase) async throws -> Result
    ) async throws -> Result {
        let db = try pool.database(schema: makeUniqueName())
        try await db.createSchemaIfNeeded()
        do {
            let result = try await body(db)
            try await db.dropSchema(cascade: true)
            return result
        } catch {
            try? await db.dropSchema(cascade: true)
            throw error
        }
    }

    /// Runs `body` with the configuration of a new, empty database named `t_<random>`, dropped
    /// afterwards, for tests that need a whole database to themselves.
    public static func withTemporaryDatabase<Result: Sendable>(
        pool: DatabasePool,
        _ body: (DatabaseConfig) async throws -> Result
    ) async throws -> Result {
        let name = try SQLIdentifier(makeUniqueName())
        let admin = pool.database(schema: nil)
        try await admin.execute(try SQLTemplate("CREATE DATABASE \(name.quoted)"))
        var config = try pool.configuration ?? makeTestConfiguration()
        config.database = name.name
        do {
            let result = try await body(config)
            try await admin.execute(try SQLTemplate("DROP DATABASE IF EXISTS \(name.quoted) WITH (FORCE)"))
            return result
        } catch {
            _ = try? await admin.execute(try SQLTemplate("DROP DATABASE IF EXISTS \(name.quoted) WITH (FORCE)"))
            throw error
        }
    }
}
