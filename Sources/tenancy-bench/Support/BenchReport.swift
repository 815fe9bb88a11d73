import Foundation

/// One measured figure of a scenario.
struct Figure: Sendable, Codable {
    /// The figure's key in the JSON report: snake case, ending with its unit.
    var key: String
    /// What the figure is, for the table.
    var label: String
    var value: Double
    var unit: String
}

/// A target of the benchmark checked against a figure of the same run.
struct TargetCheck: Sendable, Codable {
    enum Direction: String, Sendable, Codable {
        case atLeast = "at_least"
        case atMost = "at_most"
    }

    var scenario: String
    var figure: String
    var direction: Direction
    var limit: Double
    var value: Double
    var met: Bool { direction == .atLeast ? value >= limit : value <= limit }

    private enum CodingKeys: String, CodingKey { case scenario, figure, direction, limit, value, met }

    init(scenario: String, figure: String, direction: Direction, limit: Double, value: Double) {
        (self.scenario, self.figure, self.direction, self.limit, self.value) = (scenario, figure, direction, limit, value)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            scenario: try container.decode(String.self, forKey: .scenario), figure: try container.decode(String.self, forKey: .figure),
            direction: try container.decode(Direction.self, forKey: .direction), limit: try container.decode(Double.self, forKey: .limit),
            value: try container.decode(Double.self, forKey: .value))
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scenario, forKey: .scenario)
        try container.encode(figure, forKey: .figure)
        try container.encode(direction, forKey: .direction)
        try container.encode(limit, forKey: .limit)
        try container.encode(value, forKey: .value)
        try container.encode(met, forKey: .met)
    }
}

/// The figures and target checks of one scenario.
struct ScenarioResult: Sendable, Codable {
    let name: String
    private(set) var figures: [Figure] = []
    private(set) var targets: [TargetCheck] = []

    init(_ name: String) {
        self.name = name
    }

    mutating func record(_ key: String, _ label: String, _ value: Double, unit: String) {
        figures.append(Figure(key: key, label: label, value: value, unit: unit))
    }

    /// Checks the recorded figure `key` against a target.
    mutating func target(_ key: String, _ direction: TargetCheck.Direction, _ limit: Double) {
        guard let figure = figures.first(where: { $0.key == key }) else {
            preconditionFailure("no figure \(key) in scenario \(name)")
        }
        targets.append(TargetCheck(scenario: name, figure: key, direction: direction, limit: limit, value: figure.value))
    }
}

/// Everything one run of the benchmark measured, and where.
struct BenchReport: Sendable, Encodable {
    struct Machine: Sendable, Encodable {
        var cores: Int
        var memoryBytes: UInt64
        var operatingSystem: String
    }

    struct Server: Sendable, Encodable {
        var version: String
        var fsync: String
        var synchronousCommit: String
    }

    struct Parameters: Sendable, Encodable {
        var tenants: Int
        var concurrency: Int
        var queryCalls: Int
        var directoryTenants: Int
        var registryRows: Int
        var moveRows: Int
        var scaleTenants: Int?
        var scenarios: [String]
        var build: String
    }

    var benchmark = "tenancy-bench"
    var date: Date
    var machine: Machine
    var postgres: Server
    var parameters: Parameters
    var scenarios: [String: [String: Double]]
    var targets: [TargetCheck]
    var allTargetsMet: Bool

    init(date: Date, machine: Machine, postgres: Server, parameters: Parameters, results: [ScenarioResult]) {
        self.date = date
        self.machine = machine
        self.postgres = postgres
        self.parameters = parameters
        self.scenarios = Dictionary(uniqueKeysWithValues: results.map { result in
            (result.name, Dictionary(uniqueKeysWithValues: result.figures.map { ($0.key, $0.value) }))
        })
        self.targets = results.flatMap(\.targets)
        self.allTargetsMet = targets.allSatisfy(\.met)
    }

    func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The human-readable table of `results`.
    static func table(_ results: [ScenarioResult], header: String) -> String {
        var lines = [header, ""]
        let width = max(40, results.flatMap(\.figures).map(\.label.count).max() ?? 0)
        for result in results {
            lines.append(result.name)
            for figure in result.figures {
                lines.append("  " + figure.label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + format(figure.value) + " " + figure.unit)
            }
        }
        let targets = results.flatMap(\.targets)
        if !targets.isEmpty {
            lines.append("")
            lines.append("targets")
            for target in targets {
                let label = results.first { $0.name == target.scenario }?.figures.first { $0.key == target.figure }?.label ?? target.figure
                let bound = (target.direction == .atLeast ? ">= " : "<= ") + format(target.limit)
                lines.append("  " + (target.met ? "met    " : "MISSED ") + "\(target.scenario): \(label) = \(format(target.value)) (target \(bound))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double) -> String {
        let magnitude = abs(value)
        let digits = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3
        return String(format: "%.\(digits)f", value)
    }
}
