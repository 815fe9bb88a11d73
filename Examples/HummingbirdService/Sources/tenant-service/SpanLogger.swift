import Logging
import Synchronization
import Tracing

/// A tracer that logs each finished span at `debug` (operation, kind, duration, attributes,
/// status), for running without an OpenTelemetry collector. It never logs an error's text.
struct SpanLogger: Tracer {
    let logger: Logger

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> InstrumentationContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> LoggedSpan {
        LoggedSpan(operationName: operationName, kind: kind, start: instant().nanosecondsSinceEpoch, context: context(), logger: logger)
    }

    func activeSpan(identifiedBy context: InstrumentationContext) -> LoggedSpan? { nil }

    func forceFlush() {}

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract)
    where Extract.Carrier == Carrier {}

    func inject<Carrier, Inject: Injector>(_ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {}
}

final class LoggedSpan: Span {
    private struct State {
        var operationName: String
        var attributes: SpanAttributes = [:]
        var failed = false
        var ended = false
    }

    let context: InstrumentationContext
    private let kind: SpanKind
    private let start: UInt64
    private let logger: Logger
    private let state: Mutex<State>

    init(operationName: String, kind: SpanKind, start: UInt64, context: InstrumentationContext, logger: Logger) {
        self.context = context
        self.kind = kind
        self.start = start
        self.logger = logger
        self.state = Mutex(State(operationName: operationName))
    }

    var operationName: String {
        get { state.withLock { $0.operationName } }
        set { state.withLock { $0.operationName = newValue } }
    }

    var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    var isRecording: Bool { logger.logLevel <= .debug }

    func setStatus(_ status: SpanStatus) {
        if status.code == .error { state.withLock { $0.failed = true } }
    }

    func addEvent(_ event: SpanEvent) {}

    func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        state.withLock { $0.failed = true }
    }

    func addLink(_ link: SpanLink) {}

    func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let end = instant().nanosecondsSinceEpoch
        guard let finished = state.withLock({ state -> State? in
            guard !state.ended else { return nil }
            state.ended = true
            return state
        }) else { return }
        var metadata: Logger.Metadata = [
            "span.kind": "\(kind)", "span.duration_ms": "\(Double(end &- start) / 1e6)", "span.status": finished.failed ? "error" : "ok",
        ]
        finished.attributes.forEach { key, value in metadata[key] = "\(value)" }
        logger.debug("span \(finished.operationName)", metadata: metadata)
    }
}
