/// Where a new tenant goes: the placement asked for, or the open placement with the fewest
/// tenants for its weight.
enum PlacementPolicy {
    /// The placement for a new tenant among `placements`, given the tenants each holds.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/placementNotFound``, or
    ///   ``TenancyError/Code/invalidArgument`` when the one asked for (or every one) is draining.
    static func choose(_ requested: String?, among placements: [Placement], counts: () async throws -> [String: PlacementCounts]) async throws -> String {
        if let requested {
            guard let placement = placements.first(where: { $0.name == requested }) else { throw TenancyError.placementNotFound(requested) }
            guard placement.state == .open else {
                throw TenancyError(code: .invalidArgument, message: "placement \"\(requested)\" is draining and takes no new tenants; choose another, or open it again")
            }
            return requested
        }
        let open = placements.filter { $0.state == .open }
        guard let first = open.first else {
            throw TenancyError(code: .invalidArgument, message: "every placement is draining, so a new tenant has nowhere to go; open one (tenantctl placements open NAME)")
        }
        if open.count == 1 { return first.name }
        let counts = try await counts()
        // Fewest tenants per unit of weight; ties go to the earlier placement (default first).
        return open.min { left, right in
            (counts[left.name]?.tenants ?? 0) * max(1, right.weight) < (counts[right.name]?.tenants ?? 0) * max(1, left.weight)
        }?.name ?? first.name
    }
}

extension TenantLifecycle {
    /// The placement a new tenant goes to (see ``PlacementPolicy``).
    func choosePlacement(_ requested: String?) async throws -> String {
        let store = registry.store
        return try await PlacementPolicy.choose(requested, among: try await store.placements(), counts: { try await store.countByPlacement() })
    }

    /// Whether `name` is a placement that takes new tenants and spares.
    /// - Throws: ``TenancyError/Code/placementNotFound``.
    func openPlacement(_ name: String) async throws -> Bool {
        guard let placement = try await registry.store.placements().first(where: { $0.name == name }) else { throw TenancyError.placementNotFound(name) }
        return placement.state == .open
    }
}
