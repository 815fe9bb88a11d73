/// Moves that even out tenants (or their bytes) across placements: each open placement ends
/// with about its weight's share, and draining placements with none.
public struct RebalancePlan: Sendable, Hashable, Codable {
    /// What a plan evens out.
    public enum Measure: String, Sendable, Hashable, Codable, CaseIterable {
        /// The number of tenants.
        case tenants
        /// The bytes of the tenants' schemas (tables, indexes and TOAST).
        case bytes
    }

    /// One tenant to move.
    public struct Move: Sendable, Hashable, Codable {
        public var slug: String
        public var from: String
        public var to: String
        /// The tenant's share of the measure: 1 tenant, or its bytes.
        public var size: Int64
    }

    /// A placement's load before and after the plan, in the plan's measure.
    public struct Load: Sendable, Hashable, Codable {
        public var placement: String
        public var state: Placement.State
        public var weight: Int
        public var before: Int64
        public var after: Int64
        /// Its share by weight (0 for a draining placement).
        public var target: Int64
    }

    public var measure: Measure
    public var moves: [Move]
    public var loads: [Load]

    /// The plan that evens out the number of `tenants` (slug and placement of each active or
    /// suspended tenant) over `placements`, at most `maximumMoves` moves.
    /// - Throws: ``TenancyError/Code/invalidArgument`` when no placement is open.
    static func make(tenants: [(slug: String, placement: String)], placements: [Placement], maximumMoves: Int? = nil) throws -> RebalancePlan {
        try make(tenants: tenants.map { ($0.slug, $0.placement, 1) }, measure: .tenants, placements: placements, maximumMoves: maximumMoves)
    }

    /// The plan that evens out `measure` over `placements`, given each tenant's size in it.
    ///
    /// Tenants leave the placement furthest above its share for the open one furthest below,
    /// one at a time: the tenant that brings the two closest to their shares, as long as the
    /// move brings them closer (so a tenant larger than the gap stays).
    /// - Throws: ``TenancyError/Code/invalidArgument`` when no placement is open.
    static func make(tenants: [(slug: String, placement: String, size: Int64)], measure: Measure, placements: [Placement], maximumMoves: Int? = nil) throws -> RebalancePlan {
        let open = placements.filter { $0.state == .open }
        guard !open.isEmpty else {
            throw TenancyError(code: .invalidArgument, message: "every placement is draining, so tenants have nowhere to go; open one (tenantctl placements open NAME)")
        }
        var byPlacement: [String: [(slug: String, size: Int64)]] = [:]
        for tenant in tenants { byPlacement[tenant.placement, default: []].append((tenant.slug, max(0, tenant.size))) }
        let total = tenants.reduce(Int64(0)) { $0 + max(0, $1.size) }
        let targets = shares(of: total, among: open, whole: measure == .tenants)
        let before = byPlacement.mapValues { $0.reduce(Int64(0)) { $0 + $1.size } }
        var loads = before
        var moves: [Move] = []
        while maximumMoves.map({ moves.count < $0 }) ?? true {
            let surplus = placements.map { ($0.name, (loads[$0.name] ?? 0) - (targets[$0.name] ?? 0)) }.filter { $0.1 > 0 }.max { ($0.1, $1.0) < ($1.1, $0.0) }
            let deficit = open.map { ($0.name, (targets[$0.name] ?? 0) - (loads[$0.name] ?? 0)) }.filter { $0.1 > 0 }.max { ($0.1, $1.0) < ($1.1, $0.0) }
            guard let (from, above) = surplus, let (to, below) = deficit else { break }
            // How much closer to their shares both placements get; ties go to the last slug.
            func gain(_ size: Int64) -> Int64 { above + below - abs(above - size) - abs(below - size) }
            guard let index = byPlacement[from]?.indices.max(by: { left, right in
                let (l, r) = (byPlacement[from]![left], byPlacement[from]![right])
                return (gain(l.size), l.slug) < (gain(r.size), r.slug)
            }), let tenant = byPlacement[from]?[index], gain(tenant.size) > 0 else { break }
            byPlacement[from]?.remove(at: index)
            byPlacement[to, default: []].append(tenant)
            moves.append(Move(slug: tenant.slug, from: from, to: to, size: tenant.size))
            loads[from, default: 0] -= tenant.size
            loads[to, default: 0] += tenant.size
        }
        return RebalancePlan(measure: measure, moves: moves, loads: placements.map {
            Load(placement: $0.name, state: $0.state, weight: $0.weight, before: before[$0.name] ?? 0, after: loads[$0.name] ?? 0, target: targets[$0.name] ?? 0)
        })
    }

    /// Each open placement's share of `total` by weight. With `whole`, shares are whole and
    /// add up to `total`: the remainder goes to the largest fractions, then by name.
    private static func shares(of total: Int64, among open: [Placement], whole: Bool) -> [String: Int64] {
        let totalWeight = Int64(open.reduce(0) { $0 + max(1, $1.weight) })
        var targets: [String: Int64] = [:]
        var remainders: [(name: String, fraction: Int64)] = []
        for placement in open {
            let scaled = total.multipliedFullWidth(by: Int64(max(1, placement.weight)))
            let (quotient, remainder) = totalWeight.dividingFullWidth(scaled)
            targets[placement.name] = quotient
            remainders.append((placement.name, remainder))
        }
        guard whole else { return targets }
        var left = total - targets.values.reduce(0, +)
        for (name, _) in remainders.sorted(by: { ($0.fraction, $1.name) > ($1.fraction, $0.name) }) where left > 0 {
            targets[name, default: 0] += 1
            left -= 1
        }
        return targets
    }
}
