import Foundation
import PostgresNIO
import Logging
public import SchemaDB

extension Tenancy {
    /// A placement as its database and the registry see it now.
    public struct PlacementReport: Sendable, Hashable, Codable {
        /// The placement, as the registry records it.
        public var placement: Placement
        /// Its tenants and spares, by state.
        public var counts: PlacementCounts
        /// Whether this process reached the database recorded for it.
        public var isReachable: Bool
        /// Why it was not reached, or reached another database.
        public var problem: String?
        /// The bytes the tenant schemas take there (tables, indexes and TOAST); `nil` when unreachable.
        public var tenantBytes: Int64?
    }

    /// Adds a PostgreSQL database as placement `name`: connects to it, records its identity
    /// (server system identifier and database name) and its URL without the password. New
    /// tenants may go there at once; every process connects to it with its own credentials
    /// (``Configuration/placementDatabases``, or the recorded URL and `~/.pgpass`).
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument`` for a bad
    ///   name or weight, ``TenancyError/Code/placementUnreachable`` when the database cannot be
    ///   reached, ``TenancyError/Code/placementExists`` when the name, or the database, is
    ///   already a placement (the default placement's database included).
    @discardableResult
    public func addPlacement(_ name: String, database: DatabaseConfig, weight: Int = 1) async throws -> Placement {
        try Placement.validate(name: name)
        guard name != Placement.defaultName else { throw TenancyError.placementExists(name) }
        guard (1...1000).contains(weight) else {
            throw TenancyError(code: .invalidArgument, message: "a placement's weight must be from 1 to 1000, not \(weight)")
        }
        let info = try await ready()
        var probe = database
        probe.maximumConnections = 1
        let identity: DatabaseIdentity
        do {
            identity = try await DatabasePool.withPool(configuration: probe, logger: logger) { try await RegistryBinding.identity(of: $0) }
        } catch {
            throw TenancyError(code: .placementUnreachable, message: "placement \"\(name)\" cannot be reached, so it was not added: \(error)", underlying: error)
        }
        if identity == info.database {
            throw TenancyError(code: .placementExists, message: "\(identity) is the default placement's database; a placement must be another database")
        }
        var recorded = database
        recorded.password = nil
        let placement = Placement(
            name: name, url: recorded.url(maskingPassword: false), systemIdentifier: identity.systemIdentifier, databaseName: identity.databaseName,
            weight: weight, state: .open, createdAt: Date())
        try await registry.store.insertPlacement(placement)
        logger.info("placement added", metadata: [TenancyLoggingKeys.placement: "\(name)", "placement.database": "\(identity)"])
        return placement
    }

    /// Opens a placement to new tenants and spares, or drains it (``Placement/State/draining``:
    /// its tenants stay and are served; new ones go elsewhere), and sets its weight.
    /// - Throws: ``TenancyError/Code/placementNotFound``, or
    ///   ``TenancyError/Code/invalidArgument`` for a weight out of range.
    @discardableResult
    public func setPlacement(_ name: String, state: Placement.State? = nil, weight: Int? = nil) async throws -> Placement {
        if let weight, !(1...1000).contains(weight) {
            throw TenancyError(code: .invalidArgument, message: "a placement's weight must be from 1 to 1000, not \(weight)")
        }
        try await ready()
        return try await registry.store.updatePlacement(name, state: state, weight: weight)
    }

    /// Removes placement `name` from the registry. It must be draining, and no tenant, spare
    /// or move may name it; the read-only schemas moves left there must be dropped first
    /// (``dropMovedAwaySchemas(olderThan:)``). A placement that cannot be reached is removed as
    /// it is: whatever its database holds stays there.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/placementNotFound``, or
    ///   ``TenancyError/Code/invalidArgument`` naming what still holds it.
    public func removePlacement(_ name: String) async throws {
        try await ready()
        if name != Placement.defaultName, let pool = try? await placements.pool(for: name) {
            let frozen = try await SchemaCopier.frozenSchemas(prefix: configuration.schemaPrefix, on: pool.database(schema: nil))
            guard frozen.isEmpty else {
                throw TenancyError(
                    code: .invalidArgument,
                    message: "placement \"\(name)\" was not removed: it holds \(frozen.count) read-only schemas that moves left behind; drop them first (tenantctl placements cleanup)")
            }
        }
        try await registry.store.removePlacement(name)
    }

    /// Every placement with its counts, whether it is reachable, and the size of its tenant
    /// schemas. Placements are checked side by side; one that is down costs about a second.
    public func placementReports() async throws -> [PlacementReport] {
        let info = try await ready()
        let store = registry.store
        let counts = try await store.countByPlacement()
        let placements = try await store.placements()
        let reports = try await forEachConcurrently(placements.enumerated(), width: 8) { index, placement in
            var placement = placement
            if placement.name == Placement.defaultName, let database = info.database {
                (placement.systemIdentifier, placement.databaseName) = (database.systemIdentifier, database.databaseName)
            }
            var report = PlacementReport(placement: placement, counts: counts[placement.name] ?? PlacementCounts(byState: [:]), isReachable: false)
            do {
                report.tenantBytes = try await self.schemaSizes(on: placement.name).values.reduce(0, +)
                report.isReachable = true
            } catch let error as TenancyError {
                report.problem = error.message
            } catch {
                report.problem = "\(error)"
            }
            return (index, report)
        }
        return reports.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

extension Tenancy {
    /// Moves a tenant's schema to placement `target`.
    ///
    /// Online (the default), the tenant is served from its placement while PostgreSQL's logical
    /// replication copies it (the source server needs `wal_level = logical`; the target
    /// connects to it as this process does, without a password: give the target server a
    /// password file entry, or certificates); then its tables are locked, the target catches
    /// up with the last write, and writes wait only for that, the check and the switch.
    /// Offline, every process refuses the tenant (``TenancyError/Code/tenantMoving``) while its
    /// tables, locked against writes, are copied in one snapshot. Either way the copy is a new
    /// schema at the same migration level, checked table by table (row count and a checksum of
    /// every row) before the old schema is frozen (its tables refuse writes) and the registry
    /// switches the tenant to `target`. The frozen schema is kept for a rollback by hand, and
    /// reported by reconcile.
    ///
    /// Calling it again for a tenant left `moving` (a killed process, a lost connection)
    /// finishes the move, like ``resumeMove(_:)``; ``abortMove(_:)`` rolls it back.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/placementNotFound`` or
    ///   ``TenancyError/Code/invalidArgument`` (a draining target, or a tenant that cannot be
    ///   replicated online: a server without `wal_level = logical`, a table without a primary key),
    ///   ``TenancyError/Code/migrationPending`` for a tenant behind the migration set,
    ///   ``TenancyError/Code/illegalTransition`` for a tenant that is not active or suspended,
    ///   ``TenancyError/Code/tenantMoving`` for one moving elsewhere,
    ///   ``TenancyError/Code/provisioningInProgress`` while another process moves it.
    @discardableResult
    public func move(_ slug: String, to target: String, mode: MoveMode = .online) async throws -> MoveReport {
        try await lifecycle.move(try TenantSlug(slug), to: target, mode: mode)
    }

    /// Finishes the move of a tenant left `moving`.
    @discardableResult
    public func resumeMove(_ slug: String) async throws -> MoveReport {
        try await lifecycle.resumeMove(try TenantSlug(slug))
    }

    /// Rolls back the move of a tenant left `moving`: the copy is dropped, the old schema takes
    /// writes again, and the tenant is back as it was, where it was.
    @discardableResult
    public func abortMove(_ slug: String) async throws -> MoveReport {
        try await lifecycle.abortMove(try TenantSlug(slug))
    }
}

extension Tenancy {
    /// An old schema a move left read-only on a placement.
    public struct MovedAwaySchema: Sendable, Hashable, Codable {
        public var placement: String
        public var schema: String
        /// Where the tenant went and when, as the move noted it.
        public var note: String
        /// Whether it was dropped.
        public var dropped: Bool
    }

    /// Drops the old schemas that moves left read-only, once they are `olderThan` old: on every
    /// reachable placement, each frozen schema with this fleet's prefix whose tenant lives on
    /// another placement (and is not moving). Unreachable placements are skipped.
    /// - Returns: Every such schema found, dropped or kept.
    public func dropMovedAwaySchemas(olderThan age: Duration = .zero) async throws -> [MovedAwaySchema] {
        try await ready()
        let store = registry.store
        var found: [MovedAwaySchema] = []
        let rows = Dictionary(try await store.records(in: nil).map { ($0.schema, $0) }, uniquingKeysWith: { first, _ in first })
        for placement in try await store.placements() {
            guard let pool = try? await placements.pool(for: placement.name) else { continue }
            let frozen = try await SchemaCopier.frozenSchemas(prefix: configuration.schemaPrefix, on: pool.database(schema: nil))
            guard !frozen.isEmpty else { continue }
            for (schema, note) in frozen.sorted(by: { $0.key < $1.key }) {
                var entry = MovedAwaySchema(placement: placement.name, schema: schema, note: note, dropped: false)
                defer { found.append(entry) }
                // Only the leftover of a finished move: its tenant lives elsewhere and is not moving.
                guard let row = rows[schema], row.placement != placement.name, row.state != .moving, row.move == nil else { continue }
                guard let frozenAt = SchemaCopier.frozenAt(note), Date().timeIntervalSince(frozenAt) >= Double(age.wholeMilliseconds) / 1000 else { continue }
                try await pool.database(schema: nil).withTransaction { tx in
                    try await Provisioner.drop(try SQLIdentifier(schema), in: tx, lockTimeout: configuration.lockTimeout)
                }
                entry.dropped = true
                logger.info("dropped the read-only schema a move left behind", metadata: [TenancyLoggingKeys.tenantSchema: "\(schema)", TenancyLoggingKeys.placement: "\(placement.name)"])
            }
        }
        return found
    }
}

extension Tenancy {
    /// The moves that would even out the active and suspended tenants across placements (see
    /// ``RebalancePlan``): their number, from the registry alone, or the bytes of their
    /// schemas, read on every placement. Nothing is changed.
    /// - Throws: ``TenancyError/Code/placementUnreachable`` when a plan by bytes cannot read a
    ///   placement holding tenants.
    public func rebalancePlan(by measure: RebalancePlan.Measure = .tenants, maximumMoves: Int? = nil) async throws -> RebalancePlan {
        try await ready()
        let store = registry.store
        let records = try await store.records(in: [.active, .suspended])
        let placements = try await store.placements()
        guard measure == .bytes else {
            let tenants = records.compactMap { row in row.slug.map { (slug: $0, placement: row.placement) } }
            return try RebalancePlan.make(tenants: tenants, placements: placements, maximumMoves: maximumMoves)
        }
        // By placement: a moved tenant's frozen old copy has its schema's name on another one.
        let holding = Set(records.map(\.placement))
        let sizes = Dictionary(uniqueKeysWithValues: try await forEachConcurrently(placements.filter { holding.contains($0.name) }, width: 8) { placement in
            (placement.name, try await self.schemaSizes(on: placement.name))
        })
        let tenants = records.compactMap { row in row.slug.map { (slug: $0, placement: row.placement, size: sizes[row.placement]?[row.schema] ?? 0) } }
        return try RebalancePlan.make(tenants: tenants, measure: .bytes, placements: placements, maximumMoves: maximumMoves)
    }

    /// The bytes of every tenant schema on placement `name` (tables, indexes and TOAST), by schema.
    private func schemaSizes(on name: String) async throws -> [String: Int64] {
        let rows = try await placements.pool(for: name).database(schema: nil).fetchAll(
            """
            SELECT n.nspname::text, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE starts_with(n.nspname, $1) AND c.relkind IN ('r', 'm', 'p') GROUP BY 1
            """, configuration.schemaPrefix)
        var sizes: [String: Int64] = [:]
        for row in rows {
            let (schema, bytes) = try row.decode((String, Int64).self)
            sizes[schema] = bytes
        }
        return sizes
    }

    /// Performs `plan`'s moves one at a time (see ``move(_:to:mode:)``), skipping a
    /// tenant that is no longer where the plan found it, and stopping at the first move that
    /// fails.
    /// - Parameter progress: Called after each move.
    /// - Returns: The moves made.
    @discardableResult
    public func apply(_ plan: RebalancePlan, mode: MoveMode = .online, progress: (@Sendable (MoveReport) -> Void)? = nil) async throws -> [MoveReport] {
        var reports: [MoveReport] = []
        for move in plan.moves {
            guard let tenant = try await tenant(move.slug), tenant.placement == move.from, tenant.state == .active || tenant.state == .suspended else { continue }
            let report = try await self.move(move.slug, to: move.to, mode: mode)
            reports.append(report)
            progress?(report)
        }
        return reports
    }
}
