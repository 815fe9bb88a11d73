import Foundation
import GRDB
import Logging
import SchemaDB
import SchemaDBTesting
import Testing
@testable import Tenancy

let integration = Testing.ConditionTrait.enabled(if: TestPostgres.isConfigured, "needs DATABASE_URL or POSTGRES_HOSTNAME")

/// The registry store a test runs against: every registry, lifecycle and directory test runs
/// against both.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// A SQLite file.
    case sqlite
    /// A schema of the test database, on the tenants' own pool.
    case postgres

    var testDescription: String { rawValue }
}

/// A tenant migration set, a registry (a file, or a schema of the test database) and
/// `Tenancy` instances over a test pool, removed afterwards together with every schema of the
/// test's prefix.
struct TenancyFixture {
    let directory: URL
    let pool: SchemaDB.DatabasePool
    let store: StoreKind
    /// The schema prefix of this test's tenants, unique so that tests running at once never
    /// share a fleet lock or see each other's schemas.
    let schemaPrefix = TestPostgres.makeUniqueName(prefix: "tt") + "_"
    /// The schema of a PostgreSQL registry; it does not start with the tenant prefix.
    let registrySchema = TestPostgres.makeUniqueName(prefix: "reg")

    static let migrations = [
        "001_accounts.sql": """
            CREATE TABLE {{tables.accounts}} (id serial PRIMARY KEY, email text NOT NULL UNIQUE, balance int NOT NULL DEFAULT 0);
            """,
        "002_invoices.sql": """
            CREATE TABLE {{tables.invoices}} (id serial PRIMARY KEY, account_id int NOT NULL REFERENCES {{tables.accounts}} (id), total numeric NOT NULL);
            CREATE INDEX invoices_account ON {{tables.invoices}} (account_id);
            """,
    ]

    static let silent = Logger(label: "tenancy.tests", factory: { _ in SwiftLogNoOpLogHandler() })

    var migrationsURL: URL { directory.appendingPathComponent("tenant-migrations") }
    var registryPath: String { directory.appendingPathComponent("registry.sqlite").path }

    var registryLocation: RegistryLocation {
        switch store {
        case .sqlite: .sqlite(path: registryPath)
        case .postgres: .postgres(schema: registrySchema)
        }
    }

    func writeMigration(_ name: String, _ content: String) throws {
        try content.write(to: migrationsURL.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    /// A `Tenancy` over the test pool, as one process would have. It does not listen for
    /// changes unless `configure` says so (and the test runs it).
    func makeTenancy(pool: SchemaDB.DatabasePool? = nil, logger: Logger = Self.silent, configure: (inout Tenancy.Configuration) -> Void = { _ in }) throws -> Tenancy {
        var configuration = Tenancy.Configuration()
        configuration.registry = registryLocation
        configuration.migrationsDirectory = migrationsURL
        configuration.schemaPrefix = schemaPrefix
        configuration.listensForChanges = false
        configure(&configuration)
        return try Tenancy(pool: pool ?? self.pool, configuration: configuration, logger: logger)
    }

    /// Another handle on this test's registry.
    func openRegistry() throws -> TenantRegistry {
        switch store {
        case .sqlite: try TenantRegistry(path: registryPath)
        case .postgres: try TenantRegistry(pool: pool, schema: registrySchema)
        }
    }

    /// Every schema with this test's prefix.
    func existingSchemas() async throws -> [String] {
        try await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname", schemaPrefix, as: String.self)
    }

    /// Creates `schema` with the whole migration set as a provisioning would, behind the
    /// registry's back: what a crash right after the commit leaves.
    func commitSchema(_ schema: String, like tenancy: Tenancy) async throws {
        let provisioner = Provisioner(pool: pool, migrations: try tenancy.lifecycle.requireMigrations())
        try await pool.database(schema: nil).withTransaction { tx in _ = try await provisioner.create(try SQLIdentifier(schema), in: tx) }
    }

    /// Sets the registry's slug reuse delay, for tests that wait it out. Call it after the
    /// registry exists and before the `Tenancy` instances that should see it are made.
    func setSlugReuseDelay(_ delay: Duration) async throws {
        let milliseconds = String(delay.wholeMilliseconds)
        switch store {
        case .sqlite:
            try await DatabaseQueue(path: registryPath).write { db in
                try db.execute(sql: "UPDATE registry_meta SET value = ? WHERE key = 'slug_reuse_delay_ms'", arguments: [milliseconds])
            }
        case .postgres:
            try await pool.database(schema: try SQLIdentifier(registrySchema)).execute(
                "UPDATE {{tables.registry_meta}} SET value = $1 WHERE key = 'slug_reuse_delay_ms'", milliseconds)
        }
    }

    /// Runs `body` with a `Tenancy` as another process serving tenants would have: its own
    /// connections, running and listening for changes.
    func withServer<Result: Sendable>(configure: (inout Tenancy.Configuration) -> Void = { _ in }, _ body: (Tenancy) async throws -> Result) async throws -> Result {
        try await TestPostgres.withPool { pool in
            let server = try makeTenancy(pool: SchemaDB.DatabasePool(borrowing: pool.client, maximumConnections: 8, logger: Self.silent)) {
                $0.listensForChanges = true
                configure(&$0)
            }
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await server.run() }
                defer { group.cancelAll() }
                try await eventually("the server listens for changes") { server.directory.isListeningForChanges }
                return try await body(server)
            }
        }
    }

    /// The test's registry row of `slug`.
    func record(_ slug: String) async throws -> TenantRecord? {
        try await openRegistry().ready().record(slug: slug)
    }

    /// - Parameter ownDatabase: Run in a database of its own, for a test whose migrations run
    ///   `CREATE INDEX CONCURRENTLY`: it waits for every older transaction in its database,
    ///   including those other tests hold open on purpose.
    static func run(_ store: StoreKind = .sqlite, ownDatabase: Bool = false, _ body: (TenancyFixture) async throws -> Void) async throws {
        guard ownDatabase else { return try await run(store, configuration: try TestPostgres.makeTestConfiguration(), body) }
        try await TestPostgres.withPool { admin in
            try await TestPostgres.withTemporaryDatabase(pool: admin) { config in try await run(store, configuration: config, body) }
        }
    }

    private static func run(_ store: StoreKind, configuration: DatabaseConfig, _ body: (TenancyFixture) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tenant-migrations"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestPostgres.withPool(configuration: configuration) { pool in
            let fixture = TenancyFixture(directory: directory, pool: pool, store: store)
            for (name, content) in migrations { try fixture.writeMigration(name, content) }
            do {
                try await body(fixture)
            } catch {
                await fixture.dropSchemas()
                throw error
            }
            await fixture.dropSchemas()
        }
    }

    private func dropSchemas() async {
        for schema in ((try? await existingSchemas()) ?? []) + [registrySchema] {
            if let schema = try? SQLIdentifier(schema) { try? await pool.database(schema: schema).dropSchema(cascade: true) }
        }
    }
}

/// Waits until `condition` holds, checking every 10 ms, and fails after `timeout`.
/// - Returns: How long it took.
@discardableResult
func eventually(_ what: String, timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Duration {
    let start = ContinuousClock.now
    while !(try await condition()) {
        guard ContinuousClock.now - start < timeout else {
            throw TimedOut(description: "\(what) did not happen within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    return ContinuousClock.now - start
}

struct TimedOut: Error, CustomStringConvertible {
    var description: String
}

/// The code of the error `body` throws, or `nil` when it returns.
func errorCode(_ body: () async throws -> Any) async -> TenancyError.Code? {
    do {
        _ = try await body()
        return nil
    } catch {
        return (error as? TenancyError)?.code
    }
}
