import SchemaDB

/// What ``Tenancy/reconcile(fix:)`` found, and what it fixed.
public struct ReconcileReport: Sendable, Hashable, Codable {
    /// A kind of disagreement between the registry and the database.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// A schema with the tenant prefix that no tenant or spare owns. Never dropped automatically.
        case orphanSchema = "orphan_schema"
        /// A tenant or spare whose schema does not exist.
        case missingSchema = "missing_schema"
        /// A row stuck in `provisioning` with no provisioning running.
        case stuckProvisioning = "stuck_provisioning"
        /// A `failed` tenant whose schema exists: its provisioning committed, but the answer
        /// was lost. Adopted when complete.
        case failedWithSchema = "failed_with_schema"
        /// A tenant left `deleting` by a drop that did not finish.
        case unfinishedDeletion = "unfinished_deletion"
        /// A schema with migration files still to apply.
        case behind
        /// A schema where an applied file's checksum differs from the file now.
        case changedFile = "changed_file"
        /// A schema with applied files this migration set does not have (a newer release
        /// applied them). The registry's level is kept.
        case unknownFiles = "unknown_files"
        /// A registry migration level that disagrees with the schema's tracking table.
        case staleLevel = "stale_level"
        /// A placement that cannot be reached, or leads to another database than the one
        /// recorded: its rows were not checked.
        case unavailablePlacement = "unavailable_placement"
        /// A tenant left `moving` by a move that is not running: `move --resume` finishes it,
        /// `move --abort` rolls it back.
        case unfinishedMove = "unfinished_move"
        /// The old schema of a tenant that moved to another placement, kept read-only for a
        /// rollback by hand. Nothing needs doing; `tenantctl placements cleanup` drops it.
        case movedAwaySchema = "moved_away_schema"
        /// A replication slot, publication or subscription of an online move that no moving
        /// tenant owns: a slot keeps the server's WAL until it is dropped. Dropped with `fix`.
        case leftoverReplication = "leftover_replication"

        /// Whether the finding needs someone to act on it: every kind but ``movedAwaySchema``.
        public var needsAttention: Bool { self != .movedAwaySchema }
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

    /// Whether the registry and the database agree (after any fixes): every finding that
    /// needs attention was fixed.
    public var isClean: Bool { findings.allSatisfy { $0.fixed || !$0.kind.needsAttention } }
}

extension TenantLifecycle {
    /// Compares the registry with `pg_namespace` and every schema's tracking table, both ways.
    ///
    /// With `fix`, repairs what is safe, each repair one conditional write: adopts stuck or
    /// failed rows whose schema is complete, marks stuck tenants with no schema `failed`,
    /// removes stuck spare rows with no schema, discards spares whose schema is gone, finishes
    /// deletions whose schema is gone, and corrects levels the schemas contradict. It never
    /// drops a schema, never migrates, never lowers a level a newer release recorded, and
    /// never touches a row whose provisioning is running (it holds the schema's lock).
    func reconcile(fix: Bool, concurrency: Int) async throws -> ReconcileReport {
        let migrations = try requireMigrations()
        try await ready()
        let store = registry.store
        let records = try await store.records(in: nil)
        let rowsByPlacement = Dictionary(grouping: records, by: \.placement)
        // A moving tenant's schema is also on its target placement, once copied.
        let incoming = Dictionary(grouping: records.filter { $0.state == .moving && $0.move != nil }, by: { $0.move?.target ?? "" })
        var findings: [ReconcileReport.Finding] = []
        let names = Set(rowsByPlacement.keys).union(try await store.placements().map(\.name))
        for name in names.sorted() {
            let rows = rowsByPlacement[name] ?? []
            let site: Site
            do {
                site = try await self.site(name)
            } catch let error as TenancyError where [.placementUnreachable, .placementMismatch, .placementNotFound].contains(error.code) {
                findings.append(.init(kind: .unavailablePlacement, slug: nil, schema: "",
                                      detail: "\(error.message); its \(rows.count) rows were not checked", fixed: false))
                continue
            }
            findings += try await reconcile(rows, incoming: incoming[name] ?? [], on: site, fix: fix, concurrency: concurrency, migrations: migrations)
            findings += try await leftoverReplication(on: site, moving: records.filter { $0.state == .moving }, fix: fix)
        }
        return ReconcileReport(findings: findings.sorted { ($0.kind.rawValue, $0.schema, $0.detail) < ($1.kind.rawValue, $1.schema, $1.detail) })
    }

    /// Reconciles the rows placed on `site` (and the tenants `incoming` by a move) with the schemas there.
    private func reconcile(_ rows: [TenantRecord], incoming: [TenantRecord], on site: Site, fix: Bool, concurrency: Int, migrations: TenantMigrations) async throws -> [ReconcileReport.Finding] {
        let store = registry.store
        let pool = site.pool
        let existing = Set(try await pool.database(schema: nil).fetchAll(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", schemaPrefix, as: String.self))
        var findings: [ReconcileReport.Finding] = []

        let owned = Set(rows.filter { $0.state != .deleted }.map(\.schema) + incoming.map(\.schema))
        let movedAway = try await SchemaCopier.frozenSchemas(prefix: schemaPrefix, on: pool.database(schema: nil))
        for schema in existing.subtracting(owned).sorted() {
            if let note = movedAway[schema] {
                findings.append(.init(kind: .movedAwaySchema, slug: nil, schema: schema,
                                      detail: "read-only, \(note); tenantctl placements cleanup drops it", fixed: false))
                continue
            }
            let owner = rows.first { $0.schema == schema }
            findings.append(.init(kind: .orphanSchema, slug: owner?.slug, schema: schema,
                                  detail: owner.map { "the schema of a \($0.state.rawValue) row still exists" } ?? "no tenant or spare owns this schema", fixed: false))
        }

        var toInspect: [TenantRecord] = []
        for row in rows {
            let exists = existing.contains(row.schema)
            switch row.state {
            case .provisioning:
                findings.append(try await settleStuck(row, on: pool, kind: .stuckProvisioning, fix: fix, migrations: migrations))
            case .failed where exists:
                findings.append(try await settleStuck(row, on: pool, kind: .failedWithSchema, fix: fix, migrations: migrations))
            case .deleting:
                var finding = ReconcileReport.Finding(kind: .unfinishedDeletion, slug: row.slug, schema: row.schema, detail: "a drop did not finish", fixed: false)
                if exists {
                    finding.detail += "; its schema still exists, run the delete again"
                } else if fix {
                    _ = try await store.update(row, TenantChange(state: .deleted, event: .deleted, detail: "reconcile"))
                    await changed(row.slug.map { [$0] } ?? [])
                    (finding.detail, finding.fixed) = (finding.detail + "; its schema is gone, marked deleted", true)
                } else {
                    finding.detail += "; its schema is gone"
                }
                findings.append(finding)
            case .active, .suspended, .spare:
                if exists {
                    toInspect.append(row)
                } else {
                    var fixed = false
                    if fix && row.state == .spare {
                        _ = try await store.update(row, TenantChange(state: .deleted, event: .discarded, detail: "its schema is gone"))
                        fixed = true
                    }
                    findings.append(.init(kind: .missingSchema, slug: row.slug, schema: row.schema,
                                          detail: "the \(row.state.rawValue) row's schema does not exist" + (fixed ? "; the spare was discarded" : ""), fixed: fixed))
                }
            case .moving:
                let running = try await pool.database(schema: nil).withTransaction { tx in try await !Provisioner.lock(row.schema, in: tx) }
                findings.append(.init(
                    kind: .unfinishedMove, slug: row.slug, schema: row.schema,
                    detail: running
                        ? "a move to placement \"\(row.move?.target ?? "?")\" is running; left alone"
                        : "a move to placement \"\(row.move?.target ?? "?")\" did not finish; finish it with tenantctl move \(row.slug ?? "") --resume, or roll it back with --abort",
                    fixed: false))
            case .deleted, .failed:
                break
            }
        }
        let width = max(1, min(concurrency, pool.connectionLimit ?? concurrency))
        findings += try await forEachConcurrently(toInspect, width: width) { try await self.inspect($0, on: pool, fix: fix, migrations: migrations) }.flatMap { $0 }
        return findings
    }

    /// The replication objects of online moves on `site` that no moving tenant owns, dropped with `fix`.
    private func leftoverReplication(on site: Site, moving: [TenantRecord], fix: Bool) async throws -> [ReconcileReport.Finding] {
        let owned = Set(try moving.map { try replication(of: try SQLIdentifier($0.schema)).name })
        guard let registryID = registry.store.preparedInfo?.id else { return [] }
        let db = site.pool.database(schema: nil)
        // Only this registry's moves: another fleet on the same server names its own.
        let names = try await db.fetchAll(
            """
            SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database() AND starts_with(slot_name, $1)
            UNION SELECT pubname::text FROM pg_publication WHERE starts_with(pubname, $1)
            UNION SELECT s.subname::text FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
                  WHERE d.datname = current_database() AND starts_with(s.subname, $1)
            """, LogicalReplication.prefix(registryID: registryID), as: String.self)
        var findings: [ReconcileReport.Finding] = []
        for name in Set(names).subtracting(owned).sorted() {
            var finding = ReconcileReport.Finding(
                kind: .leftoverReplication, slug: nil, schema: "",
                detail: "replication objects \(name) on placement \"\(site.placement)\" belong to no move; a slot keeps this server's WAL", fixed: false)
            if fix {
                try await LogicalReplication(name: name).stop(target: db, source: db)
                (finding.detail, finding.fixed) = (finding.detail + "; dropped", true)
            }
            findings.append(finding)
        }
        return findings
    }

    /// A row in `provisioning` (or `failed` with a schema): adopted when its schema is complete,
    /// settled when there is no schema, left alone while a provisioning holds its lock.
    private func settleStuck(_ row: TenantRecord, on pool: DatabasePool, kind: ReconcileReport.Kind, fix: Bool, migrations: TenantMigrations) async throws -> ReconcileReport.Finding {
        let provisioner = Provisioner(pool: pool, migrations: migrations)
        let schema = try SQLIdentifier(row.schema)
        let store = registry.store
        let finding = try await pool.database(schema: nil).withTransaction { tx in
            var finding = ReconcileReport.Finding(kind: kind, slug: row.slug, schema: row.schema, detail: "", fixed: false)
            // A provisioning in flight holds the schema's lock until it commits: leave it alone.
            guard try await Provisioner.lock(row.schema, in: tx) else {
                finding.detail = "a provisioning is running; left alone"
                return finding
            }
            let condition = try await provisioner.condition(of: schema, on: tx)
            switch condition {
            case .present where condition.isComplete:
                finding.detail = kind == .failedWithSchema ? "failed, yet its schema is complete" : "stuck in provisioning; its schema is complete"
                guard fix else { return finding }
                let state: TenantState = row.slug == nil ? .spare : .active
                _ = try await store.update(row, TenantChange(state: state, level: migrations.currentLevel, lastError: .some(nil), event: .adopted, detail: "reconcile"))
                finding.detail += "; adopted"
            case .present(let status):
                let next = row.slug == nil ? "the next spares fill completes it" : "create the tenant again to complete it"
                finding.detail = "its schema exists but is incomplete (\(status.pending.count) files pending); \(next)"
                return finding
            case .absent:
                finding.detail = "stuck in provisioning; no schema"
                guard fix else { return finding }
                if row.slug == nil {
                    try await store.remove(row)
                    finding.detail += "; the spare row was removed"
                } else {
                    _ = try await store.update(row, TenantChange(state: .failed, lastError: .some("provisioning was interrupted before its schema was committed"), event: .failed, detail: "reconcile"))
                    finding.detail += "; marked failed, provision it again"
                }
            }
            finding.fixed = true
            return finding
        }
        if finding.fixed { await changed(row.slug.map { [$0] } ?? []) }
        return finding
    }

    private func inspect(_ row: TenantRecord, on pool: DatabasePool, fix: Bool, migrations: TenantMigrations) async throws -> [ReconcileReport.Finding] {
        let status = try await migrations.migrator(for: pool.database(schema: try SQLIdentifier(row.schema))).status()
        var findings: [ReconcileReport.Finding] = status.changed.map {
            .init(kind: .changedFile, slug: row.slug, schema: row.schema,
                  detail: "\($0.filename) changed after it was applied (recorded \($0.recordedChecksum.prefix(12))…, file \($0.fileChecksum.prefix(12))…)", fixed: false)
        }
        if !status.missing.isEmpty {
            findings.append(.init(kind: .unknownFiles, slug: row.slug, schema: row.schema,
                                  detail: "applied files this migration set does not have: \(status.missing.joined(separator: ", ")); the registry's level is kept", fixed: false))
        }
        if !status.pending.isEmpty {
            findings.append(.init(kind: .behind, slug: row.slug, schema: row.schema,
                                  detail: "\(status.pending.count) files pending: \(status.pending.joined(separator: ", "))", fixed: false))
        } else if status.isUpToDate, let level = migrations.currentLevel, row.level != level {
            let corrected = fix ? try await registry.store.recordLevel(id: row.id, level: level, event: .reconciled, detail: level.lastFile) : false
            let outcome = corrected ? "; corrected" : fix ? "; the registry records a later file, which a newer release migrates to; kept" : ""
            findings.append(.init(kind: .staleLevel, slug: row.slug, schema: row.schema,
                                  detail: "the registry says \(row.level?.lastFile ?? "nothing"), the schema is at \(level.lastFile)" + outcome, fixed: corrected))
        }
        return findings
    }
}
