import Logging
import Metrics
import Synchronization
import Tracing

/// Counters, swift-metrics instruments, spans and slow-query logging shared by every handle of
/// a pool.
///
/// Metrics: `schemadb_query_duration` (timer), `schemadb_query_errors` and
/// `schemadb_slow_queries` (counters). Each statement is a client span of the bootstrapped
/// swift-distributed-tracing tracer, named after its operation (`SELECT`), with the
/// OpenTelemetry database attributes `db.system.name`/`db.system` (`postgresql`),
/// `db.namespace` (the schema) and `db.operation.name`, plus the handle's
/// ``SchemaDatabase/spanAttributes``. Neither the statement's text nor its bind values are
/// recorded.
final class QueryInstrumentation: Sendable {
    let slowQueryThreshold: Duration?
    private let queries = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let slowQueries = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)
    private let durationTimer = Metrics.Timer(label: "schemadb_query_duration")
    private let errorCounter = Counter(label: "schemadb_query_errors")
    private let slowCounter = Counter(label: "schemadb_slow_queries")

    init(slowQueryThreshold: Duration?) {
        self.slowQueryThreshold = slowQueryThreshold
    }

    /// Runs `operation`, counting and timing it, and logs it when it is slow.
    @inline(__always)
    func measure<Result>(
        sql: @autoclosure () -> String,
        schema: SQLIdentifier?,
        logger: Logger,
        spanAttributes: [String: String] = [:],
        _ operation: () async throws -> Result
    ) async throws -> Result {
        let start = ContinuousClock.now
        inFlight.add(1, ordering: .relaxed)
        defer { inFlight.subtract(1, ordering: .relaxed) }
        let operationName = Self.operationName(of: sql())
        let span = InstrumentationSystem.tracer.startAnySpan(operationName, context: .current ?? .topLevel, ofKind: .client)
        defer { span.end() }
        if span.isRecording {
            span.updateAttributes { attributes in
                attributes["db.system.name"] = "postgresql"
                attributes["db.system"] = "postgresql"
                attributes["db.operation.name"] = operationName
                if let schema { attributes["db.namespace"] = schema.name }
                for (key, value) in spanAttributes { attributes[key] = value }
            }
        }
        do {
            let result = try await operation()
            finish(start: start, failed: false, sql: sql(), schema: schema, logger: logger)
            return result
        } catch {
            finish(start: start, failed: true, sql: sql(), schema: schema, logger: logger)
            if span.isRecording {
                span.setStatus(SpanStatus(code: .error))
                let wrapped = SchemaDBError.wrapping(error, sql: "", schema: nil) as? SchemaDBError
                span.attributes["error.type"] = wrapped?.sqlState ?? wrapped?.code.description ?? String(describing: type(of: error))
            }
            throw error
        }
    }

    /// The statement's first keyword, upper-cased: `SELECT`, `INSERT`, `BEGIN`, … (`QUERY` when
    /// it has none). A `WITH` statement is named `WITH`.
    static func operationName(of sql: String) -> String {
        var word = ""
        for scalar in sql.unicodeScalars {
            if scalar.properties.isAlphabetic {
                guard word.count < 20 else { break }
                word.unicodeScalars.append(scalar)
            } else if !word.isEmpty || !(scalar == " " || scalar == "\n" || scalar == "\t" || scalar == "(" || scalar == "\r") {
                break
            }
        }
        return word.isEmpty ? "QUERY" : word.uppercased()
    }

    private func finish(start: ContinuousClock.Instant, failed: Bool, sql: @autoclosure () -> String, schema: SQLIdentifier?, logger: Logger) {
        let elapsed = ContinuousClock.now - start
        queries.add(1, ordering: .relaxed)
        durationTimer.recordNanoseconds(elapsed.wholeNanoseconds)
        if failed {
            failures.add(1, ordering: .relaxed)
            errorCounter.increment()
        }
        if let slowQueryThreshold, elapsed >= slowQueryThreshold {
            slowQueries.add(1, ordering: .relaxed)
            slowCounter.increment()
            logger.info("slow query", metadata: [
                LoggingKeys.durationMilliseconds: "\(Double(elapsed.wholeNanoseconds) / 1e6)",
                LoggingKeys.schema: "\(schema?.name ?? "")",
                LoggingKeys.statement: "\(SchemaDBError.abbreviate(sql()))",
            ])
        }
    }

    func snapshot(maximumConnections: Int?) -> PoolStatistics {
        PoolStatistics(
            maximumConnections: maximumConnections,
            operationsInFlight: inFlight.load(ordering: .relaxed),
            queries: queries.load(ordering: .relaxed),
            failedQueries: failures.load(ordering: .relaxed),
            slowQueries: slowQueries.load(ordering: .relaxed))
    }
}

/// Counters of one pool since it was created.
public struct PoolStatistics: Sendable, Equatable, Codable {
    /// The pool's connection limit, when known (always for an owned pool).
    public var maximumConnections: Int?
    /// Queries and scoped operations running right now.
    public var operationsInFlight: Int
    /// Statements run through this pool's handles.
    public var queries: Int
    /// Statements that failed.
    public var failedQueries: Int
    /// Statements slower than the configured threshold.
    public var slowQueries: Int
}
