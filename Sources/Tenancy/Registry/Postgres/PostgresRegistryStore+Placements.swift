import Foundation
import PostgresNIO
import SchemaDB

/// The placements table, in the PostgreSQL registry.
extension PostgresRegistryStore {
    private var placementsHandle: SchemaDatabase { pool.database(schema: schema) }

    func placements() async throws -> [Placement] {
        try await translating("be read") { try await Self.placements(placementsHandle) }
    }

    func insertPlacement(_ placement: Placement) async throws {
        try await translating("be written") {
            try await placementsHandle.withTransaction { tx in
                if try await Self.placements(tx).contains(where: { $0.name == placement.name }) { throw TenancyError.placementExists(placement.name) }
                try await Self.insert(placement, tx)
            }
        }
    }

    func updatePlacement(_ name: String, state: Placement.State?, weight: Int?) async throws -> Placement {
        try await translating("be written") {
            let changed = try await placementsHandle.execute(
                "UPDATE {{tables.placements}} SET state = coalesce($2, state), weight = coalesce($3, weight) WHERE name = $1", name, state?.rawValue, weight)
            guard changed == 1, let placement = try await Self.placements(placementsHandle).first(where: { $0.name == name }) else {
                throw TenancyError.placementNotFound(name)
            }
            return placement
        }
    }

    func removePlacement(_ name: String) async throws {
        try await translating("be written") {
            // The lock waits for every write that chose this placement and still holds its row
            // (PostgresRegistrySession.placementHeld); the DELETE's own snapshot then sees them.
            let removed = try await placementsHandle.withTransaction { tx in
                _ = try await tx.fetchAll("SELECT FROM {{tables.placements}} WHERE name = $1 FOR UPDATE", name)
                return try await tx.execute(
                    """
                    DELETE FROM {{tables.placements}} WHERE name = $1 AND name <> $2 AND state = 'draining'
                      AND NOT EXISTS (SELECT FROM {{tables.tenants}} WHERE state <> 'deleted' AND (placement = $1 OR move_target = $1))
                    """, name, Placement.defaultName)
            }
            guard removed == 1 else {
                let holding = try await placementsHandle.fetchValue(
                    "SELECT count(*)::bigint FROM {{tables.tenants}} WHERE state <> 'deleted' AND (placement = $1 OR move_target = $1)", name, as: Int64.self) ?? 0
                throw TenancyError.placementNotRemoved(name, found: try await Self.placements(placementsHandle).first { $0.name == name }, tenants: Int(holding))
            }
        }
    }

    func countByPlacement() async throws -> [String: PlacementCounts] {
        try await translating("be read") {
            var counts: [String: PlacementCounts] = [:]
            for row in try await placementsHandle.fetchAll("SELECT placement, state, count(*)::bigint FROM {{tables.tenants}} WHERE state <> 'deleted' GROUP BY placement, state") {
                let (placement, name, count) = try row.decode((String, String, Int64).self)
                guard let state = TenantState(rawValue: name) else { continue }
                counts[placement, default: PlacementCounts(byState: [:])].byState[state] = Int(count)
            }
            return counts
        }
    }

    static func placements(_ db: SchemaDatabase) async throws -> [Placement] {
        try await db.fetchAll(
            "SELECT name, url, system_identifier, database_name, weight, state, created_at FROM {{tables.placements}} ORDER BY name <> $1, name",
            Placement.defaultName
        ).map { row in
            let (name, url, system, database, weight, state, createdAt) = try row.decode((String, String?, String?, String?, Int32, String, Date).self)
            return Placement(name: name, url: url, systemIdentifier: system, databaseName: database, weight: Int(weight),
                             state: Placement.State(rawValue: state) ?? .draining, createdAt: createdAt)
        }
    }

    /// Inserts `placement`, or for the default placement (which every registry has) updates it.
    static func insert(_ placement: Placement, _ db: SchemaDatabase) async throws {
        do {
            try await db.execute(
                """
                INSERT INTO {{tables.placements}} (name, url, system_identifier, database_name, weight, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (name) DO UPDATE SET weight = EXCLUDED.weight, state = EXCLUDED.state WHERE {{tables.placements}}.name = 'default'
                """,
                placement.name, placement.url, placement.systemIdentifier, placement.databaseName, placement.weight, placement.state.rawValue, placement.createdAt)
        } catch let error as SchemaDBError where error.sqlState == "23505" {
            throw TenancyError.placementExists(placement.name, identity: placement.identity)
        }
    }
}
