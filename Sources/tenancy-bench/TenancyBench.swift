import ArgumentParser
import Foundation
import Logging
import SchemaDB
import Tenancy

/// `tenancy-bench`: measures provisioning, fleet migration, query overhead, onboarding
/// latency, the directory and the registry against baselines taken in the same run.
/// `scripts/bench` builds it in release mode and runs it against a server of its own.
@main
struct TenancyBench: AsyncParsableCommand {
    enum Scenario: String, CaseIterable, ExpressibleByArgument {
        case provision, fleet, query, onboarding, claimers, invalidation, directory, registry, move, scale

        static let defaults: [Scenario] = [.provision, .fleet, .query, .onboarding, .claimers, .invalidation, .directory, .registry, .move]
    }

    static let configuration = CommandConfiguration(
        commandName: "tenancy-bench",
        abstract: "Benchmarks Tenancy against baselines measured in the same run.",
        discussion: """
            Prints a table on stderr and one JSON document on stdout. Run it through scripts/bench, \
            which builds it in release mode and starts a durable PostgreSQL server of its own.
            """)

    @Option(name: .customLong("database-url"), help: "The server to measure (default: $DATABASE_URL). Its schemas starting with bench_ are dropped.")
    var databaseURL: String?

    @Option(help: "Tenants provisioned, migrated and onboarded by each scenario.")
    var tenants = 200

    @Option(help: "Tenants provisioned or migrated at once.")
    var concurrency = 4

    @Option(parsing: .upToNextOption, help: "Scenarios to run: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")) (default: all but scale).")
    var scenarios: [Scenario] = []

    @Flag(help: "Also run the scale scenario (10,000 tenants by default; takes minutes).")
    var scale = false

    @Option(help: "Tenants of the scale scenario.")
    var scaleTenants = 10_000

    @Option(help: "Lookups through each path in the query scenario.")
    var queryCalls = 20_000

    @Option(help: "Tenants cached in the directory scenario.")
    var directoryTenants = 10_000

    @Option(help: "Tenants in the registry scenario.")
    var registryRows = 100_000

    @Option(help: "Rows of the larger tenant of the move scenario (about 100 MB by default); the smaller has a tenth.")
    var moveRows = 300_000

    @Option(help: "Rounds of the invalidation scenario; each changes one tenant four times.")
    var invalidationRounds = 25

    @Option(help: "The tenant migration set.")
    var migrations = "tenant-migrations"

    @Option(help: "The psql binary of the baselines (default: psql on PATH, then PostgreSQL 15's).")
    var psql: String?

    @Option(help: "Scratch directory for registries and SQL scripts, kept afterwards (default: a temporary directory, removed).")
    var workDir: String?

    @Option(help: "Also write the JSON document to this file.")
    var output: String?

    @Option(help: "Log level of the library under test.")
    var logLevel = "warning"

    /// Set for the child process that runs the scale scenario: print its result as JSON only.
    @Flag(help: .private)
    var emitScenarioResults = false

    /// Set for the other process of the invalidation scenario, with its registry.
    @Flag(help: .private)
    var invalidationWatcher = false
    @Option(help: .private)
    var watcherStore: String?
    @Option(help: .private)
    var watcherRegistry: String?
    @Option(help: .private)
    var watcherSchemaPrefix: String?

    /// The scenarios to run, each once, scale last: it runs in a process of its own (its peak
    /// memory is its own) after the others (the catalog it leaves does not weigh on them).
    var selectedScenarios: [Scenario] {
        var chosen: [Scenario] = []
        for scenario in (scenarios.isEmpty ? Scenario.defaults : scenarios) + (scale ? [.scale] : []) where !chosen.contains(scenario) {
            chosen.append(scenario)
        }
        return chosen.filter { $0 != .scale } + chosen.filter { $0 == .scale }
    }

    func validate() throws {
        for (name, value) in [("tenants", tenants), ("concurrency", concurrency), ("scale-tenants", scaleTenants), ("query-calls", queryCalls),
                              ("directory-tenants", directoryTenants), ("registry-rows", registryRows), ("invalidation-rounds", invalidationRounds), ("move-rows", moveRows)] where value < 1 {
            throw ValidationError("--\(name) must be at least 1, not \(value)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard FileManager.default.fileExists(atPath: migrations) else {
            throw ValidationError("no migration directory at \(migrations); pass --migrations")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            if invalidationWatcher { try await watch() } else { try await measureAll() }
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandle.standardError.write(Data("tenancy-bench: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func measureAll() async throws {
        guard let url = databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw ValidationError("no server to measure: pass --database-url or set DATABASE_URL (scripts/bench starts one)")
        }
        var config = try DatabaseConfig(url: url)
        config.retry = .none
        let workDirectory = try makeWorkDirectory()
        defer { if workDir == nil { try? FileManager.default.removeItem(at: workDirectory) } }
        let context = BenchContext(
            databaseURL: url, databaseConfig: config, tenants: tenants, concurrency: concurrency, queryCalls: queryCalls,
            directoryTenants: directoryTenants, registryRows: registryRows, moveRows: moveRows, scaleTenants: scaleTenants,
            migrationsDirectory: URL(fileURLWithPath: migrations), workDirectory: workDirectory,
            psqlPath: try resolvePSQL(), logger: Logger(label: "tenancy-bench"))
        let server = try await serverInfo(context)
        #if DEBUG
        let build = "debug"
        context.note("this is a debug build; figures from it are not comparable (scripts/bench builds in release mode)")
        #else
        let build = "release"
        #endif

        var results: [ScenarioResult] = []
        for scenario in selectedScenarios {
            switch scenario {
            case .provision: results.append(try await ProvisionScenario.run(context))
            case .fleet: results.append(try await FleetScenario.run(context))
            case .query: results.append(try await QueryOverheadScenario.run(context))
            case .onboarding:
                for store in BenchStore.allCases { results.append(try await OnboardingScenario.run(context, store: store)) }
            case .claimers:
                for store in BenchStore.allCases { results.append(try await ClaimersScenario.run(context, store: store)) }
            case .invalidation:
                for store in BenchStore.allCases { results.append(try await InvalidationScenario.run(context, store: store, rounds: invalidationRounds)) }
            case .directory: results.append(try await DirectoryScenario.run(context))
            case .registry: results.append(try await RegistryScenario.run(context))
            case .move: results.append(try await MoveScenario.run(context))
            case .scale: results.append(emitScenarioResults ? try await ScaleScenario.run(context) : try await runInChildProcess(.scale, context))
            }
        }
        if emitScenarioResults {
            FileHandle.standardOutput.write(try JSONEncoder().encode(results))
            return
        }

        let report = BenchReport(
            date: Date(),
            machine: .init(cores: ProcessInfo.processInfo.activeProcessorCount, memoryBytes: ProcessInfo.processInfo.physicalMemory,
                           operatingSystem: ProcessInfo.processInfo.operatingSystemVersionString),
            postgres: server,
            parameters: .init(tenants: tenants, concurrency: concurrency, queryCalls: queryCalls, directoryTenants: directoryTenants,
                              registryRows: registryRows, moveRows: moveRows, scaleTenants: selectedScenarios.contains(.scale) ? scaleTenants : nil,
                              scenarios: selectedScenarios.map(\.rawValue), build: build),
            results: results)
        let header = "tenancy-bench: \(tenants) tenants, concurrency \(concurrency), PostgreSQL \(server.version) (fsync \(server.fsync)), \(report.machine.cores) cores, \(build) build"
        FileHandle.standardError.write(Data(BenchReport.table(results, header: header).utf8))
        let json = try report.json() + Data("\n".utf8)
        FileHandle.standardOutput.write(json)
        if let output { try json.write(to: URL(fileURLWithPath: output)) }
    }

    /// The other process of the invalidation scenario: a running, listening `Tenancy` over the
    /// registry the scenario names, answering on standard output.
    private func watch() async throws {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], let watcherRegistry, let watcherSchemaPrefix,
              let store = watcherStore.flatMap(BenchStore.init(rawValue:))
        else { throw ValidationError("--invalidation-watcher needs DATABASE_URL, --watcher-store, --watcher-registry and --watcher-schema-prefix") }
        var config = try DatabaseConfig(url: url)
        config.retry = .none
        config.maximumConnections = 4
        var configuration = Tenancy.Configuration()
        configuration.registry = store == .sqlite ? .sqlite(path: watcherRegistry) : .postgres(schema: watcherRegistry)
        configuration.createsRegistry = false
        configuration.migrationsDirectory = nil
        configuration.schemaPrefix = watcherSchemaPrefix
        let tenancy = try Tenancy(databaseConfig: config, configuration: configuration, logger: Logger(label: "tenancy-bench.watcher"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await tenancy.run() }
            defer { group.cancelAll() }
            try await InvalidationWatcher.serve(tenancy)
        }
    }

    /// Runs `scenario` in a new process of this benchmark, so that its memory figures are its
    /// own, and returns its result.
    private func runInChildProcess(_ scenario: Scenario, _ context: BenchContext) async throws -> ScenarioResult {
        let process = Process()
        process.executableURL = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        process.environment = ProcessInfo.processInfo.environment.merging(["DATABASE_URL": context.databaseURL]) { _, url in url }
        process.arguments = [
            "--migrations", migrations, "--work-dir", context.workDirectory.path,
            "--psql", context.psqlPath, "--concurrency", String(concurrency), "--scale-tenants", String(scaleTenants),
            "--log-level", logLevel, "--scenarios", scenario.rawValue, "--emit-scenario-results",
        ]
        let output = Pipe()
        process.standardOutput = output
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        guard status == 0, let result = try? JSONDecoder().decode([ScenarioResult].self, from: data).first else {
            throw BenchError("the \(scenario.rawValue) scenario's process exited with status \(status); its error is above")
        }
        return result
    }

    private func serverInfo(_ context: BenchContext) async throws -> BenchReport.Server {
        try await context.withPool(connections: 1) { pool in
            let db = pool.database(schema: nil)
            let setting = { (name: String) in try await db.fetchValue("SELECT current_setting($1)", name, as: String.self) ?? "" }
            return BenchReport.Server(version: try await setting("server_version"), fsync: try await setting("fsync"),
                                      synchronousCommit: try await setting("synchronous_commit"))
        }
    }

    private func makeWorkDirectory() throws -> URL {
        let directory = workDir.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appending(path: "tenancy-bench-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    private func resolvePSQL() throws -> String {
        if let psql { return psql }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/psql" }
        for candidate in path + ["/usr/lib/postgresql/15/bin/psql"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw ValidationError("psql not found on PATH; install postgresql-client-15 or pass --psql")
    }
}
