public import Foundation

/// The migration files of one directory, read, checked, split and ordered once, and shared
/// by every schema they are applied to.
///
/// Only `*.sql` files directly in the directory count (a `*.SQL` name is refused, not skipped);
/// they run in the order of their numeric version prefix (`001_`, `V2__`, timestamps), so `9_x.sql` comes before `10_x.sql`.
public struct MigrationSet: Sendable, Hashable {
    /// The files, in the order they apply.
    public let files: [MigrationFile]
    /// A checksum of the whole set: the SHA-256 of every file's name and checksum, in order.
    /// Two schemas migrated by sets with the same checksum ran the same files.
    public let checksum: String

    /// A set of in-memory migrations, ordered by version.
    public init(files: [MigrationFile]) {
        self.files = files.sorted()
        self.checksum = MigrationFile.checksum(of: self.files.map { "\($0.filename) \($0.checksum)" }.joined(separator: "\n"))
    }

    /// Reads every `*.sql` file of `directory`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/migrationDirectoryUnreadable``
    ///   when the directory cannot be listed, or ``SchemaDBError/Code/invalidMigrationFile`` for
    ///   the first file that is empty, comment-only, misnamed, unreadable, a link that resolves
    ///   outside the directory or to nothing, or refused by ``MigrationFile/init(filename:content:)``.
    public init(directory: URL) throws {
        let fileManager = FileManager.default
        let root = directory.standardizedFileURL.resolvingSymlinksInPath()
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SchemaDBError(code: .migrationDirectoryUnreadable, message: "the migrations directory \(directory.path) does not exist; create it or pass the right path")
        }
        let names: [String]
        do {
            names = try fileManager.contentsOfDirectory(atPath: root.path)
        } catch {
            throw SchemaDBError(code: .migrationDirectoryUnreadable, message: "the migrations directory \(directory.path) cannot be listed: \(error.localizedDescription)")
        }
        var files: [MigrationFile] = []
        for name in names where name.lowercased().hasSuffix(".sql") && !name.hasPrefix(".") {
            guard name.hasSuffix(".sql") else {
                throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(name) cannot be used: only names ending in lower-case .sql are migrations; rename it", migrationFile: name)
            }
            let resolved = root.appendingPathComponent(name).resolvingSymlinksInPath()
            guard resolved.deletingLastPathComponent().path == root.path else {
                throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(name) cannot be used: it resolves to \(resolved.path), outside the migrations directory", migrationFile: name)
            }
            var isSubdirectory: ObjCBool = false
            guard fileManager.fileExists(atPath: resolved.path, isDirectory: &isSubdirectory) else {
                throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(name) cannot be used: it is a link to nothing (broken or looping); fix or remove it", migrationFile: name)
            }
            guard !isSubdirectory.boolValue else { continue }
            let content: String
            do {
                content = try String(contentsOf: resolved, encoding: .utf8)
            } catch {
                throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(name) cannot be read as UTF-8 text: \(error.localizedDescription)", migrationFile: name)
            }
            files.append(try MigrationFile(filename: name, content: content))
        }
        self.init(files: files)
    }

    /// The last file, whose name marks the level a fully migrated schema is at.
    public var latest: MigrationFile? { files.last }

    /// Writes the next numbered migration file into `directory`, such as `004_add_invoices.sql`,
    /// and returns its URL. The number follows the highest version present, with the same width.
    /// - Parameters:
    ///   - name: A short description; lowercased, with runs of other characters turned into `_`.
    ///   - content: The file's text. Defaults to a header comment, to be replaced by the SQL.
    public static func createNextFile(named name: String, in directory: URL, content: String? = nil) throws -> URL {
        let slug = name.lowercased().split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber)) }).joined(separator: "_")
        guard !slug.isEmpty else {
            throw SchemaDBError(code: .invalidMigrationFile, message: "the migration name \"\(name)\" has no letters or digits; describe the change, like add_invoices")
        }
        let fileManager = FileManager.default
        try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
        let existing = (try? fileManager.contentsOfDirectory(atPath: directory.path)) ?? []
        let versions = existing.filter { $0.hasSuffix(".sql") }.compactMap { MigrationFile.version(of: $0) }
        let width = versions.map(\.count).max() ?? 3
        let next = (versions.compactMap { Int($0) }.max() ?? 0) + 1
        let number = String(next)
        let filename = String(repeating: "0", count: max(0, width - number.count)) + number + "_" + slug + ".sql"
        let url = directory.appendingPathComponent(filename)
        guard !fileManager.fileExists(atPath: url.path) else {
            throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(filename) already exists", migrationFile: filename)
        }
        let text = content ?? "-- \(filename): \(name)\n-- Write the SQL here. Use {{tables.name}} for tables of the schema being migrated.\n"
        try Data(text.utf8).write(to: url, options: .withoutOverwriting)
        return url
    }
}
