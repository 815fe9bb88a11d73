import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InMemoryLogging
import Logging
import Prometheus
import SchemaDB
import SchemaDBTesting
import Tenancy
import Testing
@testable import TenantService

let integration = Testing.ConditionTrait.enabled(if: TestPostgres.isConfigured || TestPostgres.isCI, "needs DATABASE_URL")

/// One test's world: the repository's tenant migration set (copied, so a test can add a file),
/// a registry in PostgreSQL, tenant schemas with a prefix of their own, and an operator: a
/// `Tenancy` of its own standing for `tenantctl` on another machine.
struct ServiceFixture {
    static let repositoryMigrations = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tenant-migrations")
    static let silent = Logger(label: "tests", factory: { _ in SwiftLogNoOpLogHandler() })

    let pool: DatabasePool
    let directory: URL
    let schemaPrefix = TestPostgres.makeUniqueName(prefix: "svc") + "_"
    let registrySchema = TestPostgres.makeUniqueName(prefix: "svcreg")
    let operatorTenancy: Tenancy

    var migrations: URL { directory.appendingPathComponent("tenant-migrations") }

    /// The settings a replica reads from its environment.
    func settings(source: TenantSource = .header("X-Tenant")) throws -> ServiceSettings {
        var environment = ["DATABASE_URL": try TestPostgres.makeTestConfiguration().url(maskingPassword: false)]
        environment["TENANCY_REGISTRY"] = environment["DATABASE_URL"]
        environment["TENANCY_REGISTRY_SCHEMA"] = registrySchema
        environment["TENANCY_SCHEMA_PREFIX"] = schemaPrefix
        environment["TENANCY_MIGRATIONS"] = migrations.path
        environment["DATABASE_MAX_CONNECTIONS"] = "6"
        var settings = try ServiceSettings.fromEnvironment(environment)
        settings.tenantSource = source
        return settings
    }

    /// A replica of the service, with its own `PostgresClient`, as another process would have.
    func replica(source: TenantSource = .header("X-Tenant"), logger: Logger = Self.silent, metrics: PrometheusCollectorRegistry? = nil,
                 configure: (inout ServiceSettings) -> Void = { _ in }) throws -> some ApplicationProtocol {
        var settings = try settings(source: source)
        configure(&settings)
        return try ServiceApplication.make(settings: settings, logger: logger, metrics: metrics)
    }

    /// `tenantctl`, built into the same build folder as this test bundle (`scripts/test` builds
    /// both), as an operator would run it on another machine.
    static let tenantctlBinary: URL = {
        let tests = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return tests.deletingLastPathComponent().appendingPathComponent("tenantctl")
    }()

    /// Runs `tenantctl` with this test's settings and returns its standard error when it fails.
    func tenantctl(_ arguments: String...) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.tenantctlBinary.path) else {
            Issue.record("no tenantctl at \(Self.tenantctlBinary.path); build it into this build folder first (scripts/test does)")
            return
        }
        let process = Process()
        process.executableURL = Self.tenantctlBinary
        process.arguments = arguments
        let database = try TestPostgres.makeTestConfiguration().url(maskingPassword: false)
        process.environment = [
            "DATABASE_URL": database, "TENANCY_REGISTRY": database, "TENANCY_REGISTRY_SCHEMA": registrySchema,
            "TENANCY_SCHEMA_PREFIX": schemaPrefix, "TENANCY_MIGRATIONS": migrations.path,
        ]
        // Standard error goes to a file (a pipe read only after the exit could fill and block),
        // and the wait is bounded, so that a stuck tenantctl fails this test instead of the run.
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("tenantctl-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardError = try FileHandle(forWritingTo: errors)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let message = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
        guard !process.isRunning else {
            process.terminate()
            Issue.record("tenantctl \(arguments.joined(separator: " ")) did not finish within 60 s: \(message)")
            return
        }
        #expect(process.terminationStatus == 0, "tenantctl \(arguments.joined(separator: " ")) failed: \(message)")
    }

    /// The schema of `slug`, read by the operator.
    func schema(of slug: String) async throws -> SQLIdentifier {
        try SQLIdentifier(try #require(try await operatorTenancy.tenant(slug)).schema)
    }

    static func run(_ body: (ServiceFixture) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("service-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repositoryMigrations, to: directory.appendingPathComponent("tenant-migrations"))
        defer { try? FileManager.default.removeItem(at: directory) }
        try await TestPostgres.withPool { pool in
            let fixture = try ServiceFixture(pool: pool, directory: directory)
            do {
                try await body(fixture)
            } catch {
                await fixture.dropSchemas()
                throw error
            }
            await fixture.dropSchemas()
        }
    }

    private init(pool: DatabasePool, directory: URL) throws {
        self.pool = pool
        self.directory = directory
        var configuration = Tenancy.Configuration()
        configuration.registry = .postgres(schema: registrySchema)
        configuration.migrationsDirectory = directory.appendingPathComponent("tenant-migrations")
        configuration.schemaPrefix = schemaPrefix
        configuration.listensForChanges = false
        self.operatorTenancy = try Tenancy(pool: pool, configuration: configuration, logger: Self.silent)
    }

    private func dropSchemas() async {
        let schemas = (try? await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) OR nspname = $2", schemaPrefix, registrySchema, as: String.self)) ?? []
        for schema in schemas {
            if let schema = try? SQLIdentifier(schema) { try? await pool.database(schema: schema).dropSchema(cascade: true) }
        }
    }
}

extension TestClientProtocol {
    /// Sends a request for `tenant` (in the `X-Tenant` header) and returns the response.
    func send(_ uri: String, _ method: HTTPRequest.Method = .get, tenant: String? = nil, json: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let tenant { headers[HTTPField.Name("X-Tenant")!] = tenant }
        if json != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }
}

/// Waits until `condition` holds, checking every 10 ms, and fails after `timeout`.
/// - Returns: How long it took.
@discardableResult
func eventually(_ what: String, timeout: Duration = .seconds(5), _ condition: () async throws -> Bool) async throws -> Duration {
    let start = ContinuousClock.now
    while !(try await condition()) {
        guard ContinuousClock.now - start < timeout else {
            Issue.record("\(what) did not happen within \(timeout)")
            return timeout
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    return ContinuousClock.now - start
}
