public import Foundation

/// A migration recorded in a schema's tracking table.
public struct AppliedMigration: Sendable, Hashable, Codable {
    /// The file name.
    public var filename: String
    /// The checksum recorded when it was applied.
    public var checksum: String
    /// The module that applied it; `nil` for rows written without a module.
    public var module: String?
    /// When it was applied (the server's clock).
    public var appliedAt: Date?
    /// The role that applied it.
    public var appliedBy: String?
    /// How long it took, in milliseconds.
    public var executionTimeMilliseconds: Int?
}

/// A schema's migrations compared with the files.
public struct MigrationStatus: Sendable, Hashable, Codable {
    /// An applied file whose text changed since.
    public struct ChangedFile: Sendable, Hashable, Codable {
        public var filename: String
        /// The checksum in the tracking table.
        public var recordedChecksum: String
        /// The checksum of the file now.
        public var fileChecksum: String
    }

    /// Files applied and unchanged, in order.
    public var applied: [String]
    /// Files not yet applied, in the order they would run.
    public var pending: [String]
    /// Applied files whose text changed.
    public var changed: [ChangedFile]
    /// Migrations recorded as applied that have no file.
    public var missing: [String]
    /// Pending files that sort before an applied file.
    public var outOfOrder: [String]

    /// Whether every file is applied, unchanged, and nothing is missing.
    public var isUpToDate: Bool { pending.isEmpty && changed.isEmpty && missing.isEmpty }
}

/// What ``SchemaMigrator/apply()`` did.
public struct MigrationReport: Sendable, Hashable, Codable {
    /// One file applied by the run.
    public struct AppliedFile: Sendable, Hashable, Codable {
        public var filename: String
        public var executionTimeMilliseconds: Int
    }

    /// The schema migrated.
    public var schema: String?
    /// The module whose files ran.
    public var module: String
    /// The files applied by this run, in order. Empty when the schema was up to date.
    public var applied: [AppliedFile]
    /// Files that were already applied.
    public var alreadyApplied: Int

    /// Whether the run found nothing to do.
    public var wasUpToDate: Bool { applied.isEmpty }
}

/// Compares files with tracking rows. Pure: no database involved.
enum MigrationPlanner {
    struct Options {
        var allowsOutOfOrder: Bool
        var allowsMissingFiles: Bool
    }

    static func status(files: [MigrationFile], applied: [AppliedMigration]) -> MigrationStatus {
        let recorded = Dictionary(applied.map { ($0.filename, $0.checksum) }, uniquingKeysWith: { first, _ in first })
        let onDisk = Set(files.map(\.filename))
        var status = MigrationStatus(applied: [], pending: [], changed: [], missing: [], outOfOrder: [])
        var lastApplied: MigrationFile? = nil
        for file in files {
            if let checksum = recorded[file.filename] {
                if checksum == file.checksum {
                    status.applied.append(file.filename)
                } else {
                    status.changed.append(.init(filename: file.filename, recordedChecksum: checksum, fileChecksum: file.checksum))
                }
                lastApplied = file
            } else {
                status.pending.append(file.filename)
            }
        }
        if let lastApplied {
            status.outOfOrder = files.filter { recorded[$0.filename] == nil && $0 < lastApplied }.map(\.filename)
        }
        status.missing = applied.map(\.filename).filter { !onDisk.contains($0) }.sorted()
        return status
    }

    /// The files to apply, in order, or the first reason not to apply any.
    static func pending(files: [MigrationFile], applied: [AppliedMigration], schema: String?, options: Options) throws -> [MigrationFile] {
        let status = status(files: files, applied: applied)
        if let changed = status.changed.first {
            throw SchemaDBError(
                code: .migrationChecksumMismatch,
                message: "migration \(changed.filename) was changed after it was applied (recorded checksum \(changed.recordedChecksum.prefix(12))…, file checksum \(changed.fileChecksum.prefix(12))…); restore the applied text and put the change in a new migration",
                schema: schema, migrationFile: changed.filename)
        }
        if let missing = status.missing.first, !options.allowsMissingFiles {
            throw SchemaDBError(
                code: .migrationFileMissing,
                message: "migration \(missing) is recorded as applied but its file is gone; restore the file, or allow missing files",
                schema: schema, migrationFile: missing)
        }
        if let early = status.outOfOrder.first, !options.allowsOutOfOrder {
            throw SchemaDBError(
                code: .migrationOutOfOrder,
                message: "migration \(early) is new but sorts before migrations already applied; renumber it after the last applied file, or allow out-of-order migrations",
                schema: schema, migrationFile: early)
        }
        let pendingNames = Set(status.pending)
        return files.filter { pendingNames.contains($0.filename) }
    }
}
