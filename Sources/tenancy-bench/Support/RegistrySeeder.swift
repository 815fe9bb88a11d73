import Foundation
import GRDB
import Tenancy

/// Writes tenant rows straight into a registry file, for the scenarios that measure the
/// registry and the directory at sizes that provisioning would take far longer to reach. The
/// seeded tenants have no schema in PostgreSQL.
enum RegistrySeeder {
    /// Creates the registry at `path` and inserts `count` tenants named by ``slug(_:)``, in the
    /// state `state(index)`, with schemas `schemaPrefix` + index. Its slug reuse delay is two
    /// hours, so that directories may keep entries for an hour.
    static func seed(path: String, count: Int, schemaPrefix: String, state: (Int) -> TenantState = { _ in .active }) throws {
        _ = try TenantRegistry(path: path, creatingIfMissing: true)
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "UPDATE registry_meta SET value = ? WHERE key = 'slug_reuse_delay_ms'", arguments: [String(2 * 3_600_000)])
            let insert = try db.makeStatement(sql: "INSERT INTO tenants (slug, schema_name, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
            let now = Date().timeIntervalSince1970
            for index in 0..<count {
                try insert.execute(arguments: [slug(index), schemaPrefix + String(index), state(index).rawValue, now, now])
            }
        }
    }

    /// The slug of seeded tenant `index`.
    static func slug(_ index: Int) -> String {
        "tenant-" + String(index)
    }
}
