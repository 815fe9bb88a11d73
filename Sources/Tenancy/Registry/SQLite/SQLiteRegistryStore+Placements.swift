import Foundation
import GRDB

/// The placements table, in the SQLite registry.
extension SQLiteRegistryStore {
    func placements() async throws -> [Placement] {
        try await read { db in try Self.placements(db) }
    }

    func insertPlacement(_ placement: Placement) async throws {
        try await write { db in
            if try Self.placements(db).contains(where: { $0.name == placement.name }) {
                throw TenancyError.placementExists(placement.name)
            }
            try Self.insert(placement, db)
        }
    }

    func updatePlacement(_ name: String, state: Placement.State?, weight: Int?) async throws -> Placement {
        try await write { db in
            try db.execute(sql: "UPDATE placements SET state = coalesce(?, state), weight = coalesce(?, weight) WHERE name = ?",
                           arguments: [state?.rawValue, weight, name])
            guard let placement = try Self.placements(db).first(where: { $0.name == name }) else { throw TenancyError.placementNotFound(name) }
            return placement
        }
    }

    func removePlacement(_ name: String) async throws {
        try await write { db in
            try db.execute(sql: """
                DELETE FROM placements WHERE name = ? AND name <> ? AND state = 'draining'
                  AND NOT EXISTS (SELECT 1 FROM tenants WHERE state <> 'deleted' AND (placement = ? OR move_target = ?))
                """, arguments: [name, Placement.defaultName, name, name])
            guard db.changesCount == 1 else {
                let holding = try Int.fetchOne(db, sql: "SELECT count(*) FROM tenants WHERE state <> 'deleted' AND (placement = ? OR move_target = ?)", arguments: [name, name]) ?? 0
                throw TenancyError.placementNotRemoved(name, found: try Self.placements(db).first { $0.name == name }, tenants: holding)
            }
        }
    }

    func countByPlacement() async throws -> [String: PlacementCounts] {
        try await read { db in
            var counts: [String: PlacementCounts] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT placement, state, count(*) FROM tenants WHERE state <> 'deleted' GROUP BY placement, state") {
                guard let state = TenantState(rawValue: row[1]) else { continue }
                counts[row[0], default: PlacementCounts(byState: [:])].byState[state] = row[2]
            }
            return counts
        }
    }

    /// Refuses a row that would name a placement the registry no longer has (one removed
    /// after the writer chose it): writes are serialized, so the check holds until the commit.
    /// The default placement is never removed.
    static func checkPlacementExists(_ db: Database, _ name: String) throws {
        guard name != Placement.defaultName else { return }
        guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM placements WHERE name = ?)", arguments: [name]) == true else {
            throw TenancyError.placementNotFound(name)
        }
    }

    static func placements(_ db: Database) throws -> [Placement] {
        try Row.fetchAll(db, sql: "SELECT name, url, system_identifier, database_name, weight, state, created_at FROM placements ORDER BY name <> ?, name",
                         arguments: [Placement.defaultName]).map { row in
            Placement(name: row[0], url: row[1], systemIdentifier: row[2], databaseName: row[3], weight: row[4],
                      state: Placement.State(rawValue: row[5]) ?? .draining, createdAt: Date(timeIntervalSince1970: row[6]))
        }
    }

    /// Inserts `placement`, or for the default placement (which every registry has) updates it.
    static func insert(_ placement: Placement, _ db: Database) throws {
        do {
            try db.execute(
                sql: """
                    INSERT INTO placements (name, url, system_identifier, database_name, weight, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET weight = excluded.weight, state = excluded.state WHERE name = '\(Placement.defaultName)'
                    """,
                arguments: [placement.name, placement.url, placement.systemIdentifier, placement.databaseName, placement.weight, placement.state.rawValue,
                            placement.createdAt.timeIntervalSince1970])
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw TenancyError.placementExists(placement.name, identity: placement.identity)
        }
    }
}
