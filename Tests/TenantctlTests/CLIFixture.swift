import Foundation
import Logging
import SchemaDB
import SchemaDBTesting
import Testing

let integration = Testing.ConditionTrait.enabled(if: TestPostgres.isConfigured, "needs DATABASE_URL or POSTGRES_HOSTNAME")

/// The registry a CLI test runs against: every CLI test that touches the registry runs against both.
enum RegistryKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// `.tenancy/registry.sqlite` in the working directory.
    case sqlite
    /// A schema of the test database, named by `TENANCY_REGISTRY` (a URL) and `TENANCY_REGISTRY_SCHEMA`.
    case postgres

    var testDescription: String { rawValue }
}

/// What one `tenantctl` invocation printed and how it exited.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// stdout parsed as JSON.
    func json() throws -> Any {
        try JSONSerialization.jsonObject(with: Data(stdout.utf8))
    }

    func object() throws -> [String: Any] {
        try #require(try json() as? [String: Any], "stdout is not a JSON object: \(stdout)")
    }
}

/// A working directory with a registry and a migrations directory, a schema prefix of its own,
/// and the built `tenantctl` binary run against the test server. Every schema with the prefix
/// is dropped afterwards.
struct CLIFixture {
    let directory: URL
    let schemaPrefix: String
    let pool: DatabasePool
    let databaseURL: String
    let registry: RegistryKind
    /// The schema of a PostgreSQL registry; it does not start with the tenant prefix.
    let registrySchema = TestPostgres.makeUniqueName(prefix: "reg")

    static let accounts = "CREATE TABLE {{tables.accounts}} (id serial PRIMARY KEY, email text NOT NULL UNIQUE, balance int NOT NULL DEFAULT 0);\n"

    static var binary: URL { builtExecutable("tenantctl") }

    /// An executable of this package, built beside the test bundle.
    static func builtExecutable(_ name: String) -> URL {
        let tests = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return tests.deletingLastPathComponent().appendingPathComponent(name)
    }

    var migrationsURL: URL { directory.appendingPathComponent("tenant-migrations") }
    var registryURL: URL { directory.appendingPathComponent(".tenancy/registry.sqlite") }

    func writeMigration(_ name: String, _ content: String) throws {
        try content.write(to: migrationsURL.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }

    private func makeProcess(_ executable: URL, _ arguments: [String], environment extra: [String: String]) -> (Process, URL, URL) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment
        for key in environment.keys where key.hasPrefix("PG") || key.hasPrefix("TENANCY_") || key.hasPrefix("POSTGRES_") { environment[key] = nil }
        environment["DATABASE_URL"] = databaseURL
        environment["TENANCY_SCHEMA_PREFIX"] = schemaPrefix
        if registry == .postgres {
            environment["TENANCY_REGISTRY"] = databaseURL
            environment["TENANCY_REGISTRY_SCHEMA"] = registrySchema
        }
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        let id = UUID().uuidString
        let out = directory.appendingPathComponent("out-\(id)")
        let err = directory.appendingPathComponent("err-\(id)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try? FileHandle(forWritingTo: out)
        process.standardError = try? FileHandle(forWritingTo: err)
        return (process, out, err)
    }

    /// A `tenantctl` started in the background.
    struct Running {
        let process: Process
        let exited: Task<Int32, Never>
        let out: URL
        let err: URL

        func signal(_ number: Int32) { kill(process.processIdentifier, number) }

        func result() async -> CLIResult {
            let status = await exited.value
            return CLIResult(status: status, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                             stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
        }
    }

    func start(_ arguments: String..., environment: [String: String] = [:]) throws -> Running {
        try start(arguments: arguments, environment: environment)
    }

    /// Starts `executable` (by default the built `tenantctl`) in the fixture's directory, with
    /// the test server in `DATABASE_URL`.
    func start(arguments: [String], environment: [String: String] = [:], executable: URL = CLIFixture.binary) throws -> Running {
        let (process, out, err) = makeProcess(executable, arguments, environment: environment)
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { process in
            exited.continuation.yield(process.terminationStatus)
            exited.continuation.finish()
        }
        try process.run()
        let task = Task { await exited.stream.first(where: { _ in true }) ?? -1 }
        return Running(process: process, exited: task, out: out, err: err)
    }

    @discardableResult
    func run(_ arguments: String..., environment: [String: String] = [:]) async throws -> CLIResult {
        try await start(arguments: arguments, environment: environment).result()
    }

    @discardableResult
    func run(arguments: [String], environment: [String: String] = [:]) async throws -> CLIResult {
        try await start(arguments: arguments, environment: environment).result()
    }

    /// Runs `tenantctl` with `--json`, expecting exit 0, and returns its JSON object.
    func json(_ arguments: String...) async throws -> [String: Any] {
        try await json(arguments: arguments)
    }

    /// Runs `tenantctl` with `--json`, expecting exit 0, and returns its JSON object.
    func json(arguments: [String]) async throws -> [String: Any] {
        let result = try await start(arguments: arguments + ["--json"]).result()
        #expect(result.status == 0, "tenantctl \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
        return try result.object()
    }

    /// The schema of tenant `slug`.
    func schema(of slug: String) async throws -> SQLIdentifier {
        try SQLIdentifier(try #require(try await json("show", slug)["schema"] as? String))
    }

    /// Every schema with this fixture's prefix.
    func schemas() async throws -> [String] {
        try await pool.database(schema: nil).fetchAll("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1", schemaPrefix, as: String.self)
    }

    /// Runs `body` in a fresh working directory, after `tenantctl init` unless `initialized` is `false`.
    static func run(_ registry: RegistryKind = .sqlite, initialized: Bool = true, _ body: (CLIFixture) async throws -> Void) async throws {
        let binary = Self.binary
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "no tenantctl at \(binary.path); build it with swift build --build-tests")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenantctl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("tenant-migrations"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try TestPostgres.makeTestConfiguration()
        try await TestPostgres.withPool { pool in
            let fixture = CLIFixture(directory: directory, schemaPrefix: TestPostgres.makeUniqueName(prefix: "e2e") + "_", pool: pool,
                                     databaseURL: config.url(maskingPassword: false), registry: registry)
            try fixture.writeMigration("001_accounts.sql", accounts)
            do {
                if initialized { _ = try await fixture.json("init") }
                try await body(fixture)
            } catch {
                await fixture.dropSchemas()
                throw error
            }
            await fixture.dropSchemas()
        }
    }

    private func dropSchemas() async {
        for schema in ((try? await schemas()) ?? []) + [registrySchema] {
            if let schema = try? SQLIdentifier(schema) { try? await pool.database(schema: schema).dropSchema(cascade: true) }
        }
    }
}
