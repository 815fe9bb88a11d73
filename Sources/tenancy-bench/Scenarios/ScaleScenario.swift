import Foundation
import SchemaDB
import Synchronization
import Tenancy

/// Scenario 7 (opt-in): provisioning 10,000 tenants with a small migration set, then one fleet
/// migration over all of them, with the process's peak memory.
enum ScaleScenario {
    static let prefix = "bench_scale_"

    static func run(_ context: BenchContext) async throws -> ScenarioResult {
        let count = context.scaleTenants
        let concurrency = context.concurrency
        let registry = try context.freshRegistryPath("scale")
        let base = try context.migrationSet(named: "scale-1", from: emptyDirectory(context), adding: [
            ("001_items.sql", """
                CREATE TABLE {{tables.items}} (
                    id bigserial PRIMARY KEY,
                    name text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX items_name ON {{tables.items}} (name);
                """),
        ])
        let next = try context.migrationSet(named: "scale-2", from: base, adding: [("002_items_note.sql", "ALTER TABLE {{tables.items}} ADD COLUMN note text;\n")])

        let residentAtStart = ProcessMemory.residentBytes ?? 0
        context.note("scale: provisioning \(count) tenants, \(concurrency) at a time")
        let provisioning = try await context.withTenancy(schemaPrefix: prefix, registryPath: registry, migrations: base, connections: concurrency + 1) { tenancy in
            try await measure {
                _ = try await forEachConcurrently(0..<count, width: concurrency) { index in try await tenancy.create("tenant-\(index)") }
            }
        }
        let residentAfterProvisioning = ProcessMemory.residentBytes ?? 0

        context.note("scale: one new file to \(count) tenants, \(concurrency) at a time")
        let early = Mutex<MemoryReading?>(nil)
        let late = Mutex<MemoryReading?>(nil)
        let (fleet, atNewLevel) = try await context.withTenancy(schemaPrefix: prefix, registryPath: registry, migrations: next, connections: concurrency + 1) { tenancy in
            var options = FleetMigrator.Options()
            options.concurrency = concurrency
            let start = ContinuousClock.now
            let report = try await tenancy.fleet.run(.all, options: options) { progress in
                if progress.finished == progress.total / 10 { early.withLock { $0 = MemoryReading() } }
                if progress.finished == progress.total { late.withLock { $0 = MemoryReading() } }
            }
            let elapsed = ContinuousClock.now - start
            guard report.run.status == .completed else {
                throw BenchError("fleet run \(report.run.id) ended \(report.run.status.rawValue): \(report.failures.first?.error ?? "")")
            }
            return (elapsed, try await countAtNewLevel(tenancy))
        }
        let residentAfterFleet = ProcessMemory.residentBytes ?? 0
        context.note("scale: dropping \(count) schemas")
        try await context.dropSchemas(prefix: prefix)
        // The scenarios after this one find the catalog as compact as before it.
        _ = try await context.withPool(connections: 1) { pool in try await pool.database(schema: nil).execute("VACUUM FULL") }

        let megabytes = { (bytes: Int) in Double(bytes) / 1_048_576 }
        var result = ScenarioResult("scale")
        result.record("tenants", "tenants", Double(count), unit: "tenants")
        result.record("provision_minutes", "provision all, concurrency \(concurrency)", provisioning.seconds / 60, unit: "min")
        result.record("provision_tenants_per_second", "provisioning rate", Double(count) / provisioning.seconds, unit: "tenants/s")
        result.record("fleet_minutes", "fleet-migrate all, concurrency \(concurrency)", fleet.seconds / 60, unit: "min")
        result.record("fleet_tenants_per_second", "fleet rate", Double(count) / fleet.seconds, unit: "tenants/s")
        result.record("at_new_level", "tenants at the new level (registry and schema)", Double(atNewLevel), unit: "tenants")
        result.record("resident_at_start_mb", "resident memory at the start", megabytes(residentAtStart), unit: "MB")
        result.record("resident_after_provisioning_mb", "resident memory after provisioning", megabytes(residentAfterProvisioning), unit: "MB")
        let (first, last) = (early.withLock { $0 } ?? MemoryReading(), late.withLock { $0 } ?? MemoryReading())
        result.record("heap_fleet_10_percent_mb", "heap at 10% of the fleet run", megabytes(first.heap), unit: "MB")
        result.record("heap_fleet_last_tenant_mb", "heap when the last tenant finished", megabytes(last.heap), unit: "MB")
        result.record("resident_fleet_10_percent_mb", "resident memory at 10% of the fleet run", megabytes(first.resident), unit: "MB")
        result.record("resident_fleet_last_tenant_mb", "resident memory when the last tenant finished", megabytes(last.resident), unit: "MB")
        result.record("resident_after_fleet_mb", "resident memory after the fleet run", megabytes(residentAfterFleet), unit: "MB")
        result.record("peak_resident_mb", "peak resident memory of the process", megabytes(ProcessMemory.peakResidentBytes ?? 0), unit: "MB")
        result.target("at_new_level", .atLeast, Double(count))
        result.target("peak_resident_mb", .atMost, 200)
        return result
    }

    /// The tenants whose registry level is the current one and whose schema has the new column.
    private static func countAtNewLevel(_ tenancy: Tenancy) async throws -> Int {
        let level = tenancy.currentLevel
        let registered = Set(try await tenancy.registry.tenants(in: .active).filter { $0.migrationLevel == level }.map(\.schema))
        let migrated = try await tenancy.pool.database(schema: nil).fetchAll(
            """
            SELECT n.nspname FROM pg_catalog.pg_attribute a
            JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE starts_with(n.nspname, $1) AND c.relname = 'items' AND a.attname = 'note' AND NOT a.attisdropped
            """, prefix, as: String.self)
        return migrated.filter(registered.contains).count
    }

    private struct MemoryReading: Sendable {
        var heap = ProcessMemory.allocatedBytes ?? 0
        var resident = ProcessMemory.residentBytes ?? 0
    }

    private static func emptyDirectory(_ context: BenchContext) throws -> URL {
        let directory = context.workDirectory.appending(path: "scale-empty")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }
}
