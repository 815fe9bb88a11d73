import Foundation
import Logging
import SchemaDB
import Tenancy

/// What every scenario works with: the server, the run's settings and a scratch directory.
struct BenchContext: Sendable {
    let databaseURL: String
    let databaseConfig: DatabaseConfig
    let tenants: Int
    let concurrency: Int
    let queryCalls: Int
    let directoryTenants: Int
    let registryRows: Int
    let moveRows: Int
    let scaleTenants: Int
    let migrationsDirectory: URL
    let workDirectory: URL
    let psqlPath: String
    let logger: Logger

    /// Prints a progress line on stderr.
    func note(_ message: String) {
        FileHandle.standardError.write(Data("tenancy-bench: \(message)\n".utf8))
    }

    /// A registry file of the work directory, removed first when it exists.
    func freshRegistryPath(_ name: String) throws -> String {
        let path = workDirectory.appending(path: "\(name).sqlite").path
        for suffix in ["", "-wal", "-shm", ".lock"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
        return path
    }

    /// A registry of `store` for one scenario, empty: a fresh SQLite file, or a schema
    /// `bench_reg_<name>` of the measured database (dropped first).
    func registryLocation(_ store: BenchStore, name: String) async throws -> RegistryLocation {
        switch store {
        case .sqlite:
            return .sqlite(path: try freshRegistryPath(name))
        case .postgres:
            try await dropSchemas(prefix: BenchStore.schemaPrefix + name)
            return .postgres(schema: BenchStore.schemaPrefix + name)
        }
    }

    /// A pool configuration of `connections` connections.
    func databaseConfig(connections: Int) -> DatabaseConfig {
        var config = databaseConfig
        config.maximumConnections = connections
        return config
    }

    /// Runs `body` with a `Tenancy` over a pool of its own, running for the call.
    func withTenancy<Result: Sendable>(
        schemaPrefix: String, registryPath: String, migrations: URL? = nil, connections: Int,
        directory: TenantDirectory.Configuration = .init(),
        _ body: (Tenancy) async throws -> Result
    ) async throws -> Result {
        try await withTenancy(schemaPrefix: schemaPrefix, registry: .sqlite(path: registryPath), migrations: migrations, connections: connections, directory: directory, body)
    }

    /// Runs `body` with a `Tenancy` over a pool of its own, running for the call.
    func withTenancy<Result: Sendable>(
        schemaPrefix: String, registry: RegistryLocation, migrations: URL? = nil, connections: Int,
        directory: TenantDirectory.Configuration = .init(), listening: Bool = false,
        _ body: (Tenancy) async throws -> Result
    ) async throws -> Result {
        var configuration = tenancyConfiguration(schemaPrefix: schemaPrefix, registry: registry, migrations: migrations, directory: directory)
        configuration.listensForChanges = listening
        let tenancy = try Tenancy(databaseConfig: databaseConfig(connections: connections), configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await tenancy.run() }
            defer { group.cancelAll() }
            try await tenancy.pool.checkConnection()
            return try await body(tenancy)
        }
    }

    /// The settings of a benchmark's `Tenancy`.
    func tenancyConfiguration(schemaPrefix: String, registry: RegistryLocation, migrations: URL? = nil, directory: TenantDirectory.Configuration = .init()) -> Tenancy.Configuration {
        var configuration = Tenancy.Configuration()
        configuration.registry = registry
        configuration.migrationsDirectory = migrations ?? migrationsDirectory
        configuration.schemaPrefix = schemaPrefix
        configuration.listensForChanges = false
        configuration.directory = directory
        return configuration
    }

    /// Runs `body` with a pool of `connections` connections.
    func withPool<Result: Sendable>(connections: Int, _ body: (DatabasePool) async throws -> Result) async throws -> Result {
        try await DatabasePool.withPool(configuration: databaseConfig(connections: connections), logger: logger, body)
    }

    /// A copy of the migration set in the work directory, with `extraFiles` (name, SQL) added.
    func migrationSet(named name: String, from source: URL? = nil, adding extraFiles: [(String, String)]) throws -> URL {
        let target = workDirectory.appending(path: name)
        if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
        try FileManager.default.copyItem(at: source ?? migrationsDirectory, to: target)
        for (filename, sql) in extraFiles {
            try Data(sql.utf8).write(to: target.appending(path: filename))
        }
        return target
    }

    /// Drops every schema whose name starts with `prefix`, a few at a time, then vacuums, so
    /// that the next scenario does not pay for the dead catalog rows.
    func dropSchemas(prefix: String) async throws {
        try await withPool(connections: 4) { pool in
            let names = try await schemaNames(prefix: prefix, in: pool)
            _ = try await forEachConcurrently(names, width: 4) { name in
                try await pool.database(schema: try SQLIdentifier(name)).dropSchema(cascade: true)
            }
            try await pool.database(schema: nil).execute("VACUUM")
        }
    }

    /// The schemas whose name starts with `prefix`, in name order.
    func schemaNames(prefix: String, in pool: DatabasePool) async throws -> [String] {
        try await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname", prefix, as: String.self)
    }

    /// Runs `psql -f file` against the server in one session, stopping at the first error.
    /// - Returns: How long psql ran.
    func runPSQL(_ file: URL) async throws -> Duration {
        let errors = workDirectory.appending(path: "psql-errors.log")
        try Data().write(to: errors)
        let errorHandle = try FileHandle(forWritingTo: errors)
        defer { try? errorHandle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: psqlPath)
        process.arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", databaseURL, "-f", file.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errorHandle
        let start = ContinuousClock.now
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: BenchError("cannot run \(psqlPath): \(error.localizedDescription); pass --psql")) }
        }
        let elapsed = ContinuousClock.now - start
        guard status == 0 else {
            let message = (try? String(contentsOf: errors, encoding: .utf8))?.split(separator: "\n").first.map(String.init) ?? ""
            throw BenchError("psql -f \(file.lastPathComponent) exited with status \(status): \(message)")
        }
        return elapsed
    }
}

/// A benchmark that cannot go on: a one-line reason.
struct BenchError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// The registry store a scenario measures.
enum BenchStore: String, CaseIterable, Sendable {
    case sqlite
    case postgres

    /// The prefix of the schemas of PostgreSQL registries the benchmark makes.
    static let schemaPrefix = "bench_reg_"
}
