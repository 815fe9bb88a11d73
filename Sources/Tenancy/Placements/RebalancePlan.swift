/// Moves that even out tenants across placements: each open placement ends with its weight's
/// share of the tenants, and draining placements with none.
public struct RebalancePlan: Sendable, Hashable, Codable {
    /// One tenant to move.
    public struct Move: Sendable, Hashable, Codable {
        public var slug: String
        public var from: String
        public var to: String
    }

    /// A placement's tenants before and after the plan.
    public struct Load: Sendable, Hashable, Codable {
        public var placement: String
        public var state: Placement.State
        public var weight: Int
        public var before: Int
        public var after: Int
        /// Its share of the tenants by weight (0 for a draining placement).
        public var target: Int
    }

    public var moves: [Move]
    public var loads: [Load]

    /// The plan for `tenants` (slug and placement of each active or suspended tenant) over
    /// `placements`, at most `maximumMoves` moves.
    /// - Throws: ``TenancyError/Code/invalidArgument`` when no placement is open.
    static func make(tenants: [(slug: String, placement: String)], placements: [Placement], maximumMoves: Int? = nil) throws -> RebalancePlan {
        let open = placements.filter { $0.state == .open }
        guard !open.isEmpty else {
            throw TenancyError(code: .invalidArgument, message: "every placement is draining, so tenants have nowhere to go; open one (tenantctl placements open NAME)")
        }
        var byPlacement: [String: [String]] = [:]
        for tenant in tenants { byPlacement[tenant.placement, default: []].append(tenant.slug) }
        // Integer shares by weight; the remainder goes to the largest fractions, then by name.
        let totalWeight = open.reduce(0) { $0 + max(1, $1.weight) }
        var targets: [String: Int] = [:]
        var remainders: [(name: String, fraction: Double)] = []
        for placement in open {
            let exact = Double(tenants.count) * Double(max(1, placement.weight)) / Double(totalWeight)
            targets[placement.name] = Int(exact.rounded(.down))
            remainders.append((placement.name, exact - exact.rounded(.down)))
        }
        var left = tenants.count - targets.values.reduce(0, +)
        for (name, _) in remainders.sorted(by: { ($0.fraction, $1.name) > ($1.fraction, $0.name) }) where left > 0 {
            targets[name, default: 0] += 1
            left -= 1
        }
        // Tenants leave the most crowded placement for the emptiest one, one at a time; each
        // placement gives up its tenants in slug order, last first.
        var counts = Dictionary(uniqueKeysWithValues: placements.map { ($0.name, byPlacement[$0.name]?.count ?? 0) })
        var pools = byPlacement.mapValues { $0.sorted() }
        var moves: [Move] = []
        while maximumMoves.map({ moves.count < $0 }) ?? true {
            let surplus = placements.map { ($0.name, (counts[$0.name] ?? 0) - (targets[$0.name] ?? 0)) }.filter { $0.1 > 0 }.max { ($0.1, $1.0) < ($1.1, $0.0) }
            let deficit = open.map { ($0.name, (targets[$0.name] ?? 0) - (counts[$0.name] ?? 0)) }.filter { $0.1 > 0 }.max { ($0.1, $1.0) < ($1.1, $0.0) }
            guard let (from, _) = surplus, let (to, _) = deficit, let slug = pools[from]?.popLast() else { break }
            moves.append(Move(slug: slug, from: from, to: to))
            counts[from, default: 0] -= 1
            counts[to, default: 0] += 1
        }
        let loads = placements.map {
            Load(placement: $0.name, state: $0.state, weight: $0.weight, before: byPlacement[$0.name]?.count ?? 0, after: counts[$0.name] ?? 0, target: targets[$0.name] ?? 0)
        }
        return RebalancePlan(moves: moves, loads: loads)
    }
}
