import Foundation
import Logging
import PostgresNIO

/// Applies a ``MigrationSet`` to one schema and keeps the record in the schema's
/// `schema_migrations` table, in pgdbm's layout and with pgdbm's checksums, so schemas
/// migrated by either tool are recognised by the other.
///
/// Runners of the same schema and module take turns through an advisory lock keyed on
/// (schema, module), taken before the tracking table is created; runners on different schemas
/// never wait on each other. By default all pending files run in ONE transaction: the schema
/// moves to the new version or stays where it was.
public struct SchemaMigrator: Sendable {
    /// How pending files are grouped into transactions.
    public enum TransactionMode: String, Sendable, Codable {
        /// All pending files in one transaction. The default.
        case singleTransaction
        /// Each file in its own transaction: a failure keeps the files before it.
        case perFile
    }

    /// Migrator settings. Every one has a default.
    public struct Options: Sendable {
        /// Defaults to ``TransactionMode/singleTransaction``.
        public var transactionMode: TransactionMode = .singleTransaction
        /// The longest wait for another runner of the same schema and module, and for each table
        /// lock a migration statement needs inside a transaction (`SET LOCAL lock_timeout`), so
        /// a session holding a tenant's table cannot stall the migrator. Defaults to 30 s.
        public var lockTimeout: Duration = .seconds(30)
        /// Apply new files that sort before applied ones instead of refusing. Defaults to `false`.
        public var allowsOutOfOrder: Bool = false
        /// Go on when an applied migration's file is gone instead of refusing. Defaults to `false`.
        public var allowsMissingFiles: Bool = false
        /// Create the schema when it does not exist. Defaults to `true`.
        public var createsSchema: Bool = true
        /// The tracking table. Defaults to `schema_migrations`, as pgdbm.
        public var trackingTable: SQLIdentifier = SchemaMigrator.defaultTrackingTable

        public init() {}
    }

    /// pgdbm's tracking table name.
    public static let defaultTrackingTable = try! SQLIdentifier("schema_migrations")

    /// The schema's handle.
    public let database: SchemaDatabase
    /// The files.
    public let migrations: MigrationSet
    /// The module name that keeps this set apart from other sets in the same schema.
    public let module: String
    /// The settings.
    public let options: Options

    /// Creates a migrator. It touches nothing until a method is called.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration`` when
    ///   `module` is empty or longer than 100 characters.
    public init(database: SchemaDatabase, migrations: MigrationSet, module: String, options: Options = .init()) throws {
        guard !module.isEmpty, module.count <= 100 else {
            throw SchemaDBError.invalidConfiguration("the migration module name must be 1 to 100 characters, not \(module.count)")
        }
        self.database = database
        self.migrations = migrations
        self.module = module
        self.options = options
    }

    /// Applies every pending file.
    /// - Returns: What was applied; empty when the schema was up to date.
    /// - Throws: ``SchemaDBError``: a refusal (changed, missing or out-of-order file) before
    ///   anything runs, ``SchemaDBError/Code/migrationLockTimeout``, or
    ///   ``SchemaDBError/Code/migrationFailed`` naming the file.
    @discardableResult
    public func apply() async throws -> MigrationReport {
        if options.transactionMode == .singleTransaction && migrations.files.allSatisfy(\.runsInTransaction) {
            return try await database.withTransaction { transaction in
                try await apply(inTransaction: transaction)
            }
        }
        return try await applyWithSessionLock()
    }

    /// Applies every pending file inside the caller's transaction, so that other work (such as
    /// creating the schema) commits or rolls back together with the migrations.
    /// - Parameter transaction: A handle from ``SchemaDatabase/withTransaction(isolation:readOnly:_:)``;
    ///   its schema is the one migrated.
    /// - Throws: As ``apply()``; also when a pending file is marked `-- pgdbm:no-transaction`.
    @discardableResult
    public func apply(inTransaction transaction: SchemaDatabase) async throws -> MigrationReport {
        guard transaction.isInTransaction else {
            throw SchemaDBError.invalidConfiguration("apply(inTransaction:) needs a handle from withTransaction")
        }
        let db = transaction.withSchema(database.schema)
        let transactionID = try await acquireLock(on: db, transactionScoped: true)
        let applied = try await readApplied(db, creatingTable: true)
        let pending = try plan(applied: applied)
        if let file = pending.first(where: { !$0.runsInTransaction }) {
            throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(file.filename) is marked no-transaction and cannot run inside a transaction; apply it with apply()", schema: db.schema?.name, migrationFile: file.filename)
        }
        var appliedFiles: [MigrationReport.AppliedFile] = []
        for file in pending {
            appliedFiles.append(try await run(file, on: db))
        }
        try await record(appliedFiles, checksums: pending.map(\.checksum), on: db, inTransaction: transactionID)
        return report(applied: appliedFiles, alreadyApplied: applied.count)
    }

    /// The files ``apply()`` would run, in order, without changing anything.
    /// - Throws: The same refusals as ``apply()``.
    public func pendingFiles() async throws -> [MigrationFile] {
        try plan(applied: try await readApplied(database, creatingTable: false))
    }

    /// The plain SQL that applies `files` to this handle's schema in one transaction, tracking
    /// rows included: for review before a release, or for another runner such as `psql -f`.
    ///
    /// The script takes no migration lock and does not check what is already applied: pass the
    /// files ``pendingFiles()`` returns, or every file for a new schema.
    /// - Parameter creatingSchema: Start with `CREATE SCHEMA` and the tracking table, as
    ///   provisioning a new schema does.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidMigrationFile`` for a
    ///   file marked `-- pgdbm:no-transaction`.
    public func script(applying files: [MigrationFile], creatingSchema: Bool) throws -> String {
        if let file = files.first(where: { !$0.runsInTransaction }) {
            throw SchemaDBError(code: .invalidMigrationFile, message: "migration \(file.filename) is marked no-transaction and cannot run inside a script's transaction", schema: database.schema?.name, migrationFile: file.filename)
        }
        var statements = ["BEGIN"]
        if creatingSchema {
            if database.schema != nil { statements.append(try database.render("CREATE SCHEMA {{schema}}")) }
            statements += try trackingTableStatements().map(database.render)
        }
        for file in files {
            statements += try file.statements.map(database.render)
        }
        if !files.isEmpty {
            let rows = files.map { "(\(Self.literal($0.filename)), \(Self.literal($0.checksum)), \(Self.literal(module)), 0)" }
            statements.append(try database.render(try SQLTemplate(
                "INSERT INTO \(trackingTemplate) (filename, checksum, module_name, execution_time_ms) VALUES " + rows.joined(separator: ", "))))
        }
        statements.append("COMMIT")
        return statements.map { $0 + ";\n" }.joined()
    }

    private static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// The schema's migrations compared with the files: applied, pending, changed and missing.
    public func status() async throws -> MigrationStatus {
        MigrationPlanner.status(files: migrations.files, applied: try await readApplied(database, creatingTable: false))
    }

    /// This module's applied migrations, newest first.
    public func history(limit: Int = 50) async throws -> [AppliedMigration] {
        guard try await trackingTableExists(database) else { return [] }
        return try await database.fetchAll(
            try SQLTemplate(
                """
                SELECT filename, checksum, module_name, applied_at, applied_by, execution_time_ms
                FROM \(trackingTemplate) WHERE module_name = $1 OR module_name IS NULL
                ORDER BY applied_at DESC, id DESC LIMIT $2
                """), module, limit, as: TrackingRow.self
        ).map(\.applied)
    }

    // MARK: - Steps

    private func plan(applied: [AppliedMigration]) throws -> [MigrationFile] {
        try MigrationPlanner.pending(
            files: migrations.files, applied: applied, schema: database.schema?.name,
            options: .init(allowsOutOfOrder: options.allowsOutOfOrder, allowsMissingFiles: options.allowsMissingFiles))
    }

    /// Per-file transactions and no-transaction files: a session lock held across them.
    private func applyWithSessionLock() async throws -> MigrationReport {
        try await database.withConnection { session in
            try await acquireLock(on: session, transactionScoped: false)
            do {
                // A file outside a transaction (CREATE INDEX CONCURRENTLY) may run long.
                _ = try await session.fetchAll("SELECT set_config('statement_timeout', '0', false)")
                let result = try await applyBatches(on: session)
                try await releaseSessionLock(on: session)
                return result
            } catch {
                try? await releaseSessionLock(on: session)
                throw error
            }
        }
    }

    private func applyBatches(on session: SchemaDatabase) async throws -> MigrationReport {
        let applied = try await readApplied(session, creatingTable: true)
        let pending = try plan(applied: applied)
        var batches: [[MigrationFile]] = []
        for file in pending {
            let joinsLast = options.transactionMode == .singleTransaction && file.runsInTransaction
                && batches.last?.last?.runsInTransaction == true
            if joinsLast { batches[batches.count - 1].append(file) } else { batches.append([file]) }
        }
        var appliedFiles: [MigrationReport.AppliedFile] = []
        for batch in batches {
            if batch[0].runsInTransaction {
                appliedFiles += try await session.withTransaction { transaction in
                    let transactionID = try await limitLockWaits(transaction)
                    var done: [MigrationReport.AppliedFile] = []
                    for file in batch { done.append(try await run(file, on: transaction)) }
                    try await record(done, checksums: batch.map(\.checksum), on: transaction, inTransaction: transactionID)
                    return done
                }
            } else {
                let done = try await run(batch[0], on: session)
                try await record([done], checksums: [batch[0].checksum], on: session, inTransaction: nil)
                appliedFiles.append(done)
            }
        }
        return report(applied: appliedFiles, alreadyApplied: applied.count)
    }

    private func run(_ file: MigrationFile, on db: SchemaDatabase) async throws -> MigrationReport.AppliedFile {
        let start = ContinuousClock.now
        db.markForeignSQL()
        for (index, statement) in file.statements.enumerated() {
            do {
                _ = try await db.rows(try db.makeQuery(statement, []))
            } catch var error as SchemaDBError {
                error.migrationFile = file.filename
                let kept = file.runsInTransaction ? "nothing of its transaction was kept" : "statements before it were kept (the file runs outside a transaction)"
                if error.code == .lockTimeout && file.runsInTransaction {
                    error.code = .migrationLockTimeout
                    error.message = "migration \(file.filename) waited more than \(options.lockTimeout) for a table lock at statement \(index + 1) of \(file.statements.count); \(kept); retry when the sessions holding the table are done, or raise the lock timeout"
                } else {
                    if error.code == .queryFailed { error.code = .migrationFailed }
                    let cause = error.redactedServerMessage.map { "\($0) (SQLSTATE \(error.sqlState ?? "?"))" } ?? error.message
                    error.message = "migration \(file.filename) failed at statement \(index + 1) of \(file.statements.count): \(cause); \(kept)"
                }
                throw error
            }
        }
        let elapsed = ContinuousClock.now - start
        let milliseconds = max(1, Int(elapsed.wholeMilliseconds))
        db.logger.debug("applied migration", metadata: [
            LoggingKeys.schema: "\(db.schema?.name ?? "")",
            LoggingKeys.migrationModule: "\(module)",
            LoggingKeys.migrationFile: "\(file.filename)",
            LoggingKeys.durationMilliseconds: "\(milliseconds)",
        ])
        return .init(filename: file.filename, executionTimeMilliseconds: milliseconds)
    }

    /// Writes the tracking rows of `files`. With `transactionID`, only while the transaction
    /// that applied them is still the session's: a file that ended it (a `COMMIT` hidden from
    /// the load-time check) makes this fail instead of recording work that was partly committed.
    private func record(_ files: [MigrationReport.AppliedFile], checksums: [String], on db: SchemaDatabase, inTransaction transactionID: Int64?) async throws {
        guard !files.isEmpty else { return }
        let written = try await db.execute(
            try SQLTemplate(
                """
                INSERT INTO \(trackingTemplate) (filename, checksum, module_name, execution_time_ms)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
                WHERE $5::bigint IS NULL OR txid_current() = $5::bigint
                """),
            files.map(\.filename), checksums, Array(repeating: module, count: files.count), files.map(\.executionTimeMilliseconds), transactionID)
        guard written == files.count else {
            let names = files.map(\.filename).joined(separator: ", ")
            throw SchemaDBError(
                code: .migrationFailed,
                message: "migrations \(names) ended the migrator's transaction, so what ran before that end was committed and the rest was not; nothing was recorded as applied; check the schema by hand and remove transaction control from the files",
                schema: db.schema?.name, migrationFile: files.last?.filename)
        }
    }

    private func report(applied: [MigrationReport.AppliedFile], alreadyApplied: Int) -> MigrationReport {
        if !applied.isEmpty {
            database.logger.info("migrated schema", metadata: [
                LoggingKeys.schema: "\(database.schema?.name ?? "")",
                LoggingKeys.migrationModule: "\(module)",
                LoggingKeys.migrationCount: "\(applied.count)",
            ])
        }
        return MigrationReport(schema: database.schema?.name, module: module, applied: applied, alreadyApplied: alreadyApplied)
    }

    // MARK: - Tracking table

    private var trackingTemplate: String { "{{tables.\(options.trackingTable.name)}}" }

    /// Creates the tracking table and its index, pgdbm's layout.
    private func trackingTableStatements() throws -> [SQLTemplate] {
        [
            try SQLTemplate(
                """
                CREATE TABLE IF NOT EXISTS \(trackingTemplate) (
                    id SERIAL PRIMARY KEY,
                    filename VARCHAR(255) NOT NULL,
                    checksum VARCHAR(64) NOT NULL,
                    module_name VARCHAR(100),
                    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    applied_by VARCHAR(100) DEFAULT CURRENT_USER,
                    execution_time_ms INTEGER,
                    UNIQUE(filename, module_name)
                )
                """),
            try SQLTemplate(
                "CREATE INDEX IF NOT EXISTS \(SQLIdentifier.quote("idx_\(options.trackingTable.name)_module")) ON \(trackingTemplate) (module_name, filename)"),
        ]
    }

    /// Reads `pg_class` rather than calling `to_regclass`: a name lookup can answer from the
    /// session's catalog cache, which in a transaction that began before another runner
    /// committed the table still says it does not exist.
    private func trackingTableExists(_ db: SchemaDatabase) async throws -> Bool {
        try await db.tableExists(options.trackingTable.name)
    }

    /// The applied migrations of this module, and of rows written with no module (pgdbm's
    /// legacy rows). With `creatingTable`, a missing table (and schema) is created first.
    private func readApplied(_ db: SchemaDatabase, creatingTable: Bool) async throws -> [AppliedMigration] {
        guard try await trackingTableExists(db) else {
            guard creatingTable else { return [] }
            if options.createsSchema { try await db.createSchemaIfNeeded() }
            for statement in try trackingTableStatements() { try await db.execute(statement) }
            return []
        }
        return try await db.fetchAll(
            try SQLTemplate(
                """
                SELECT filename, checksum, module_name, applied_at, applied_by, execution_time_ms
                FROM \(trackingTemplate) WHERE module_name = $1 OR module_name IS NULL ORDER BY id
                """), module, as: TrackingRow.self
        ).map(\.applied)
    }

    // MARK: - Locking

    /// The advisory lock key of this schema and module, so that runners of different schemas
    /// never share a lock.
    var lockKey: Int64 {
        AdvisoryLockKey.make("schemadb.migrations", database.schema?.name ?? "", module)
    }

    /// Takes the lock, waiting up to ``Options/lockTimeout``. Transaction-scoped, the same round
    /// trip bounds the transaction's table-lock waits (see ``limitLockWaits(_:)``).
    /// - Returns: Transaction-scoped, the transaction's ID (`txid_current()`).
    @discardableResult
    private func acquireLock(on db: SchemaDatabase, transactionScoped: Bool) async throws -> Int64? {
        let attempt: () async throws -> (Bool, Int64?) = transactionScoped
            ? {
                let row = try await db.fetchOne(
                    "SELECT pg_try_advisory_xact_lock($1), txid_current(), set_config('lock_timeout', $2, true), set_config('statement_timeout', '0', true)",
                    lockKey, lockTimeoutSetting)
                guard let (acquired, transactionID, _, _) = try row?.decode((Bool, Int64, String, String).self) else { return (false, nil) }
                return (acquired, transactionID)
            }
            : { (try await db.fetchValue("SELECT pg_try_advisory_lock($1)", lockKey, as: Bool.self) == true, nil) }
        let deadline = ContinuousClock.now + options.lockTimeout
        var wait = Duration.milliseconds(5)
        while true {
            let (acquired, transactionID) = try await attempt()
            if acquired { return transactionID }
            let now = ContinuousClock.now
            guard now < deadline else {
                throw SchemaDBError(
                    code: .migrationLockTimeout,
                    message: "another runner held the migration lock of module \"\(module)\" for more than \(options.lockTimeout); wait for it to finish or raise the lock timeout",
                    schema: db.schema?.name)
            }
            try await Task.sleep(for: min(wait, deadline - now))
            wait = min(wait * 2, .milliseconds(250))
        }
    }

    /// Bounds each table-lock wait of the current transaction by ``Options/lockTimeout``, as
    /// `SET LOCAL lock_timeout` does.
    /// - Returns: The transaction's ID (`txid_current()`).
    private func limitLockWaits(_ transaction: SchemaDatabase) async throws -> Int64? {
        try await transaction.fetchValue("SELECT txid_current(), set_config('lock_timeout', $1, true), set_config('statement_timeout', '0', true)", lockTimeoutSetting, as: Int64.self)
    }

    /// ``Options/lockTimeout`` in milliseconds, as `lock_timeout` takes it.
    private var lockTimeoutSetting: String { String(max(1, options.lockTimeout.wholeMilliseconds)) }

    /// Releases the session lock and gives `statement_timeout` back its connect-time value.
    private func releaseSessionLock(on session: SchemaDatabase) async throws {
        _ = try await session.fetchAll("SELECT pg_advisory_unlock($1)", lockKey)
        _ = try await session.fetchAll("RESET statement_timeout")
    }
}

/// A row of the tracking table.
private struct TrackingRow: Decodable {
    var filename: String
    var checksum: String
    var module_name: String?
    var applied_at: Date?
    var applied_by: String?
    var execution_time_ms: Int?

    var applied: AppliedMigration {
        AppliedMigration(filename: filename, checksum: checksum, module: module_name, appliedAt: applied_at, appliedBy: applied_by, executionTimeMilliseconds: execution_time_ms)
    }
}
