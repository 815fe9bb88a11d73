import Foundation
import Tenancy

/// Scenario: how long after one process changes a tenant another process serving it refuses
/// (or follows) it. The other process is a child of this benchmark: a running `Tenancy`,
/// listening for changes, whose cached entries would otherwise live 30 s.
///
/// Each sample: the watcher caches the tenant and polls its directory; this process notes the
/// time, makes the change (suspend, resume, rename, drop) and reads the time the watcher first
/// saw it. The change's own commit is part of the figure.
enum InvalidationScenario {
    static func run(_ context: BenchContext, store: BenchStore, rounds: Int) async throws -> ScenarioResult {
        let prefix = "bench_inval_"
        let registry = try await context.registryLocation(store, name: "invalidation")
        context.note("invalidation (\(store.rawValue) registry): \(rounds) rounds of suspend, resume, rename and drop seen by another process")
        let samples = try await context.withTenancy(schemaPrefix: prefix, registry: registry, connections: context.concurrency + 1) { tenancy in
            _ = try await tenancy.fillSpares(count: rounds, concurrency: context.concurrency)
            let watcher = try InvalidationWatcher.start(context, store: store, registry: registry, schemaPrefix: prefix)
            defer { watcher.stop() }
            try await watcher.expect("ready")
            var samples = Samples()
            for round in 0..<rounds {
                let slug = "watched-\(round)"
                try await tenancy.create(slug)
                samples.append(try await watcher.time(slug, until: "tenantSuspended") { try await tenancy.suspend(slug) })
                samples.append(try await watcher.time(slug, until: "active") { try await tenancy.resume(slug) })
                samples.append(try await watcher.time(slug, until: "tenantNotFound") { try await tenancy.rename(slug, to: slug + "-r") })
                samples.append(try await watcher.time(slug + "-r", until: "tenantDeleted") { try await tenancy.delete(slug + "-r", confirmingDataLoss: true) })
            }
            return samples
        }
        try await context.dropSchemas(prefix: prefix)
        try await context.dropSchemas(prefix: BenchStore.schemaPrefix)

        var result = ScenarioResult("invalidation_\(store.rawValue)")
        result.record("changes", "changes seen by the other process", Double(samples.values.count), unit: "changes")
        result.record("p50_ms", "change to refusal elsewhere, p50", samples.median, unit: "ms")
        result.record("p99_ms", "change to refusal elsewhere, p99", samples.percentile(99), unit: "ms")
        result.record("max_ms", "change to refusal elsewhere, max", samples.maximum, unit: "ms")
        result.target("p99_ms", .atMost, 100)
        return result
    }
}

/// The other process of the invalidation scenario: this benchmark started with
/// `--invalidation-watcher`, spoken to in lines over its standard input and output.
final class InvalidationWatcher {
    private let process: Process
    private let input: FileHandle
    private var lines: AsyncStream<String>.AsyncIterator

    private init(process: Process, input: FileHandle, lines: AsyncStream<String>) {
        self.process = process
        self.input = input
        self.lines = lines.makeAsyncIterator()
    }

    static func start(_ context: BenchContext, store: BenchStore, registry: RegistryLocation, schemaPrefix: String) throws -> InvalidationWatcher {
        let process = Process()
        process.executableURL = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        process.environment = ProcessInfo.processInfo.environment.merging(["DATABASE_URL": context.databaseURL]) { _, url in url }
        let location = switch store {
        case .sqlite: context.workDirectory.appending(path: "invalidation.sqlite").path
        case .postgres: BenchStore.schemaPrefix + "invalidation"
        }
        process.arguments = [
            "--invalidation-watcher", "--watcher-store", store.rawValue, "--watcher-registry", location,
            "--watcher-schema-prefix", schemaPrefix, "--migrations", context.migrationsDirectory.path,
        ]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        let (lines, continuation) = AsyncStream<String>.makeStream()
        let buffer = LineBuffer()
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                continuation.finish()
                return
            }
            for line in buffer.add(data) { continuation.yield(line) }
        }
        try process.run()
        return InvalidationWatcher(process: process, input: stdin.fileHandleForWriting, lines: lines)
    }

    /// Waits for the watcher's next line, which must be `expected`.
    func expect(_ expected: String) async throws {
        let line = await next()
        guard line == expected else { throw BenchError("the watcher process said \"\(line ?? "nothing")\", not \"\(expected)\"") }
    }

    /// Has the watcher cache `slug` and poll it, runs `change`, and returns the milliseconds
    /// from just before the change to the moment the watcher saw `outcome`.
    func time(_ slug: String, until outcome: String, _ change: () async throws -> Void) async throws -> Double {
        send("watch \(slug) \(outcome)")
        try await expect("watching")
        let start = Date()
        try await change()
        guard let reply = await next(), reply.hasPrefix("seen "), let seen = Double(reply.dropFirst(5)) else {
            throw BenchError("the watcher process did not see \(slug) become \(outcome)")
        }
        return (seen - start.timeIntervalSince1970) * 1000
    }

    func stop() {
        try? input.close()
        process.terminate()
    }

    private func send(_ line: String) {
        input.write(Data((line + "\n").utf8))
    }

    private func next() async -> String? {
        await lines.next(isolation: #isolation)
    }

    /// The watcher's side: caches and polls what it is asked to watch, answering with the
    /// wall-clock time it first saw the expected outcome.
    static func serve(_ tenancy: Tenancy) async throws {
        try await waitUntilListening(tenancy)
        reply("ready")
        while let line = readLine() {
            let words = line.split(separator: " ").map(String.init)
            guard words.count == 3, words[0] == "watch" else { continue }
            let (slug, expected) = (words[1], words[2])
            _ = await outcome(of: slug, in: tenancy)
            reply("watching")
            let deadline = ContinuousClock.now + .seconds(10)
            var seen = false
            while ContinuousClock.now < deadline {
                if await outcome(of: slug, in: tenancy) == expected {
                    reply("seen \(Date().timeIntervalSince1970)")
                    seen = true
                    break
                }
                try await Task.sleep(for: .microseconds(100))
            }
            if !seen { reply("timeout") }
        }
    }

    private static func waitUntilListening(_ tenancy: Tenancy) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !tenancy.directory.isListeningForChanges {
            guard ContinuousClock.now < deadline else { throw BenchError("the watcher never started listening for changes") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private static func outcome(of slug: String, in tenancy: Tenancy) async -> String {
        do {
            _ = try await tenancy.database(for: slug)
            return "active"
        } catch let error as TenancyError {
            return "\(error.code)"
        } catch {
            return "error"
        }
    }

    private static func reply(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// Splits bytes into lines as they arrive.
private final class LineBuffer: @unchecked Sendable {
    // @unchecked: only the pipe's readability handler, which runs one call at a time, uses it.
    private var pending = Data()

    func add(_ data: Data) -> [String] {
        pending.append(data)
        var lines: [String] = []
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
            pending.removeSubrange(pending.startIndex...newline)
        }
        return lines
    }
}
