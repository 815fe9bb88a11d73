/// Lets at most `width` tasks at a time through ``withPermit(_:)``; the others wait in order.
actor AsyncGate {
    private var free: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(width: Int) {
        free = max(1, width)
    }

    /// Runs `body` once a permit is free, and frees it afterwards.
    func withPermit<Result: Sendable>(_ body: @Sendable () async throws -> Result) async rethrows -> Result {
        if free > 0 {
            free -= 1
        } else {
            await withCheckedContinuation { waiters.append($0) }
        }
        defer { release() }
        return try await body()
    }

    private func release() {
        if waiters.isEmpty { free += 1 } else { waiters.removeFirst().resume() }
    }
}
