/// Timing samples and their summary statistics.
struct Samples: Sendable {
    private(set) var values: [Double] = []

    init(_ values: [Double] = []) {
        self.values = values
    }

    mutating func append(_ value: Double) {
        values.append(value)
    }

    mutating func append(contentsOf other: Samples) {
        values.append(contentsOf: other.values)
    }

    var count: Int { values.count }

    var mean: Double {
        values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
    }

    var median: Double { percentile(50) }

    var maximum: Double { values.max() ?? 0 }

    /// The nearest-rank percentile: the smallest sample with at least `percent`% of the samples
    /// at or below it.
    func percentile(_ percent: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((percent / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var milliseconds: Double { seconds * 1e3 }
    var microseconds: Double { seconds * 1e6 }
    var nanoseconds: Double { seconds * 1e9 }
}

/// Runs `body` and returns how long it took.
func measure(_ body: () async throws -> Void) async rethrows -> Duration {
    let start = ContinuousClock.now
    try await body()
    return ContinuousClock.now - start
}
