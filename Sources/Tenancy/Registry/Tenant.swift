public import Foundation
import SchemaDB

/// A tenant as the registry knows it.
public struct Tenant: Sendable, Hashable, Codable {
    /// The registry's stable id; it survives renames.
    public var id: Int64
    /// The tenant's public name.
    public var slug: TenantSlug
    /// A human-readable name.
    public var displayName: String?
    /// The PostgreSQL schema holding the tenant's tables. Chosen by the provisioner; opaque.
    public var schema: String
    /// The ``Placement`` (PostgreSQL database) the schema lives in; `default` is the database
    /// ``Tenancy`` was built with.
    public var placement: String
    /// The lifecycle state.
    public var state: TenantState
    /// Bumped by every change of the row: a change is written only if the row is still at the
    /// generation it was read at.
    public var generation: Int64
    /// How far the schema is migrated, when known.
    public var migrationLevel: MigrationLevel?
    /// When the row was created.
    public var createdAt: Date
    /// When the row last changed.
    public var updatedAt: Date
    /// The last error, for `failed` tenants and failed drops.
    public var lastError: String?
    /// The placement a `moving` tenant is being moved to.
    public var moveTarget: String?
}

/// A pre-provisioned schema that no tenant has claimed yet.
public struct SpareSchema: Sendable, Hashable, Codable {
    /// The registry's id.
    public var id: Int64
    /// The schema.
    public var schema: String
    /// The ``Placement`` the schema lives in.
    public var placement: String
    /// How far the schema is migrated.
    public var migrationLevel: MigrationLevel?
    /// When it was provisioned.
    public var createdAt: Date
}

/// How far a schema is migrated: the last applied file and the checksum of the whole set.
public struct MigrationLevel: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The last applied migration file, such as `004_invoices.sql`.
    public var lastFile: String
    /// The ``SchemaDB/MigrationSet/checksum`` of the set the schema was migrated with.
    public var setChecksum: String

    public init(lastFile: String, setChecksum: String) {
        self.lastFile = lastFile
        self.setChecksum = setChecksum
    }

    public var description: String { lastFile }

    /// Whether migration `file` comes after this level's last file, in the order a set applies
    /// its files (by version, then name). A name without a version comes after nothing.
    func precedes(file: String) -> Bool {
        guard let mine = MigrationFile.version(of: lastFile), let theirs = MigrationFile.version(of: file) else { return false }
        return MigrationFile.precedes((mine, lastFile), (theirs, file))
    }
}

/// One entry of a tenant's event log.
public struct TenantEvent: Sendable, Hashable, Codable {
    /// What happened.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A provisioning started (or was retried).
        case provisioning
        /// A new schema was created and migrated.
        case provisioned
        /// Provisioning failed.
        case failed
        /// The schema of an interrupted or unanswered provisioning was complete and was taken over.
        case adopted
        /// A spare schema was provisioned.
        case spareCreated = "spare_created"
        /// A spare schema was handed to the tenant.
        case claimed
        /// The tenant was suspended.
        case suspended
        /// The tenant was resumed.
        case resumed
        /// The slug changed; the detail holds the old and new slug.
        case renamed
        /// A drop started: the tenant is no longer served.
        case deleting
        /// A drop did not finish and the tenant went back to its earlier state.
        case deleteRolledBack = "delete_rolled_back"
        /// The schema was dropped.
        case deleted
        /// A spare whose schema was gone was discarded.
        case discarded
        /// Migration files were applied.
        case migrated
        /// Reconcile corrected the row.
        case reconciled
        /// A move to another placement started; the tenant is not served until it ends.
        case moveStarted = "move_started"
        /// The tenant's schema now lives on another placement; the detail names both.
        case moved
        /// A move was rolled back: the tenant stays where it was.
        case moveRolledBack = "move_rolled_back"
    }

    /// What happened.
    public var kind: Kind
    /// When it happened.
    public var at: Date
    /// Details, such as the error or the old slug.
    public var detail: String?
}
