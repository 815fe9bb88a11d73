import SchemaDB

/// What ``Provisioner/reconcile(fix:)`` found, and what it fixed.
public struct ReconcileReport: Sendable, Hashable, Codable {
    /// A kind of disagreement between the registry and the database.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A schema with the tenant prefix that no tenant or spare owns. Never dropped automatically.
        case orphanSchema = "orphan_schema"
        /// A tenant or spare whose schema does not exist.
        case missingSchema = "missing_schema"
        /// A row stuck in `provisioning` with no provisioning running.
        case stuckProvisioning = "stuck_provisioning"
        /// A schema with migration files still to apply.
        case behind
        /// A schema where an applied file's checksum differs from the file now.
        case changedFile = "changed_file"
        /// A registry migration level that disagrees with the schema's tracking table.
        case staleLevel = "stale_level"
    }

    /// One disagreement.
    public struct Finding: Sendable, Hashable, Codable {
        public var kind: Kind
        /// The tenant, when the schema belongs to one.
        public var slug: String?
        public var schema: String
        /// What exactly is wrong, and what was done.
        public var detail: String
        /// Whether `reconcile(fix: true)` repaired it.
        public var fixed: Bool
    }

    public var findings: [Finding]

    /// Whether the registry and the database agree (after any fixes).
    public var isClean: Bool { findings.allSatisfy(\.fixed) }
}

extension Provisioner {
    /// Compares the registry with `pg_namespace` and every schema's tracking table, both ways.
    ///
    /// With `fix`, repairs what is safe: adopts stuck rows whose schema is complete, marks stuck
    /// rows with no schema `failed` (or removes such spare rows), removes spare rows whose schema
    /// is gone, and corrects stale migration levels. It never drops a schema and never migrates:
    /// orphan schemas, missing tenant schemas, changed files and tenants behind are reported.
    public func reconcile(fix: Bool = false, concurrency: Int = 4) async throws -> ReconcileReport {
        let rows = try await registry.schemaStates()
        let admin = pool.database(schema: nil)
        let existing = Set(try await admin.fetchAll(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", configuration.schemaPrefix, as: String.self))
        var findings: [ReconcileReport.Finding] = []

        let owned = Set(rows.filter { $0.state != .deleted && $0.state != .failed }.map(\.schema))
        for schema in existing.subtracting(owned).sorted() {
            let owner = rows.first { $0.schema == schema }
            findings.append(.init(kind: .orphanSchema, slug: owner?.slug, schema: schema,
                                  detail: owner.map { "the schema of a \($0.state.rawValue) row still exists" } ?? "no tenant or spare owns this schema", fixed: false))
        }

        var toInspect: [(id: Int64, slug: String?, schema: String, level: MigrationLevel?)] = []
        for row in rows {
            let exists = existing.contains(row.schema)
            switch row.state {
            case .provisioning:
                findings.append(try await healStuck(row, schemaExists: exists, fix: fix))
            case .active, .suspended, .spare:
                if exists {
                    toInspect.append((row.id, row.slug, row.schema, row.level))
                } else {
                    var fixed = false
                    if fix && row.state == .spare {
                        try await registry.removeRow(id: row.id)
                        fixed = true
                    }
                    findings.append(.init(kind: .missingSchema, slug: row.slug, schema: row.schema,
                                          detail: "the \(row.state.rawValue) row's schema does not exist" + (fixed ? "; the spare row was removed" : ""), fixed: fixed))
                }
            case .deleted, .failed:
                break
            }
        }
        findings += try await inspect(toInspect, fix: fix, concurrency: concurrency)
        return ReconcileReport(findings: findings.sorted { ($0.kind.rawValue, $0.schema) < ($1.kind.rawValue, $1.schema) })
    }

    private func healStuck(_ row: TenantRegistry.TenantRow, schemaExists: Bool, fix: Bool) async throws -> ReconcileReport.Finding {
        var finding = ReconcileReport.Finding(kind: .stuckProvisioning, slug: row.slug, schema: row.schema,
                                              detail: schemaExists ? "stuck in provisioning; its schema exists" : "stuck in provisioning; no schema", fixed: false)
        guard fix else { return finding }
        let schema = try SQLIdentifier(row.schema)
        // A provisioning in flight holds the schema's lock: leave it alone.
        let running = try await pool.database(schema: schema).withTransaction { tx in
            try await tx.fetchValue("SELECT pg_try_advisory_xact_lock($1)", Self.schemaLockKey(row.schema), as: Bool.self) != true
        }
        guard !running else {
            finding.detail += "; a provisioning is running, left alone"
            return finding
        }
        if schemaExists {
            let status = try await makeMigrator(pool.database(schema: schema)).status()
            guard status.isUpToDate else {
                finding.detail += "; the schema is incomplete (\(status.pending.count) files pending), provision it again"
                return finding
            }
            try await registry.transition(id: row.id, to: row.slug == nil ? .spare : .active, event: "adopted", detail: "reconcile", level: currentLevel)
            finding.detail += "; adopted"
        } else if row.slug == nil {
            try await registry.removeRow(id: row.id)
            finding.detail += "; the spare row was removed"
        } else {
            try await registry.transition(id: row.id, to: .failed, event: "failed", lastError: "provisioning was interrupted before the schema was committed")
            finding.detail += "; marked failed, provision it again"
        }
        finding.fixed = true
        return finding
    }

    private func inspect(_ rows: [(id: Int64, slug: String?, schema: String, level: MigrationLevel?)], fix: Bool, concurrency: Int) async throws -> [ReconcileReport.Finding] {
        let width = min(concurrency, pool.connectionLimit ?? concurrency)
        return try await forEachConcurrently(rows, width: width) { try await self.inspect($0, fix: fix) }.flatMap { $0 }
    }

    private func inspect(_ row: (id: Int64, slug: String?, schema: String, level: MigrationLevel?), fix: Bool) async throws -> [ReconcileReport.Finding] {
        let status = try await makeMigrator(pool.database(schema: try SQLIdentifier(row.schema))).status()
        var findings: [ReconcileReport.Finding] = status.changed.map {
            .init(kind: .changedFile, slug: row.slug, schema: row.schema,
                  detail: "\($0.filename) changed after it was applied (recorded \($0.recordedChecksum.prefix(12))…, file \($0.fileChecksum.prefix(12))…)", fixed: false)
        }
        if !status.pending.isEmpty {
            findings.append(.init(kind: .behind, slug: row.slug, schema: row.schema,
                                  detail: "\(status.pending.count) files pending: \(status.pending.joined(separator: ", "))", fixed: false))
        } else if status.changed.isEmpty, let level = currentLevel, row.level != level {
            if fix { try await registry.setLevel(id: row.id, level: level, event: "reconciled") }
            findings.append(.init(kind: .staleLevel, slug: row.slug, schema: row.schema,
                                  detail: "the registry says \(row.level?.lastFile ?? "nothing"), the schema is at \(level.lastFile)" + (fix ? "; corrected" : ""), fixed: fix))
        }
        return findings
    }
}

extension Tenancy {
    /// Compares the registry with the database and, with `fix`, repairs what is safe. See
    /// ``Provisioner/reconcile(fix:concurrency:)``.
    public func reconcile(fix: Bool = false) async throws -> ReconcileReport {
        defer { if fix { directory.invalidateAll() } }
        return try await provisioner.reconcile(fix: fix)
    }
}
