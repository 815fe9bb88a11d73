import Foundation
import SchemaDB

/// The keys of the registry's own record (`registry_meta`), shared by both stores.
enum RegistryMeta {
    static let id = "registry_id"
    static let slugReuseDelay = "slug_reuse_delay_ms"
    static let systemIdentifier = "database_system_identifier"
    static let databaseName = "database_name"
    static let schemaPrefix = "schema_prefix"
    static let migrationModule = "migration_module"

    /// A slug given up by a rename stays unavailable to other tenants this long: twice the
    /// default directory time to live.
    static let defaultSlugReuseDelay = Duration.seconds(60)

    /// A new registry id: 16 random hex digits.
    static func makeID() -> String {
        String(UInt64.random(in: 0 ... .max) | (1 << 63), radix: 16)
    }

    /// The registry's record from its key-value rows.
    static func info(_ values: [String: String], formatVersion: Int) throws -> RegistryInfo {
        guard let id = values[id] else {
            throw TenancyError(code: .registryFailed, message: "the registry has no id; it is damaged or was not created by Tenancy")
        }
        let database = values[systemIdentifier].flatMap { system in values[databaseName].map { DatabaseIdentity(systemIdentifier: system, databaseName: $0) } }
        let delay = values[slugReuseDelay].flatMap(Int64.init).map { Duration.milliseconds($0) } ?? defaultSlugReuseDelay
        return RegistryInfo(formatVersion: formatVersion, id: id, database: database, schemaPrefix: values[schemaPrefix], migrationModule: values[migrationModule], slugReuseDelay: delay)
    }

    /// The rows to write to bind a registry, or the reason it cannot be bound.
    static func binding(_ info: RegistryInfo, database: DatabaseIdentity, schemaPrefix prefix: String, migrationModule module: String, location: String) throws -> [(String, String)] {
        if let recorded = info.database, recorded != database {
            throw TenancyError(
                code: .registryMismatch,
                message: "the registry \(location) describes the tenants of \(recorded), not of \(database); use that database, or the registry of this one")
        }
        if let recorded = info.schemaPrefix, recorded != prefix {
            throw TenancyError(
                code: .registryMismatch,
                message: "the registry \(location) holds tenants with schema prefix \"\(recorded)\", not \"\(prefix.debugDescriptionEscaped)\"; use that prefix, or another registry")
        }
        if let recorded = info.migrationModule, recorded != module {
            throw TenancyError(
                code: .registryMismatch,
                message: "the registry \(location) holds tenants migrated with module \"\(recorded)\", not \"\(module.debugDescriptionEscaped)\"; set the same migration module, or use another registry")
        }
        var rows: [(String, String)] = []
        if info.database == nil || info.schemaPrefix == nil {
            rows += [(systemIdentifier, database.systemIdentifier), (databaseName, database.databaseName), (schemaPrefix, prefix)]
        }
        if info.migrationModule == nil { rows.append((migrationModule, module)) }
        return rows
    }
}
