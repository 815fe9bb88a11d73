import Foundation
import Logging
import Metrics
import SchemaDB
import Tracing

extension TenantLifecycle {
    /// Onboards a tenant: claims a spare schema when one is ready (a registry change only),
    /// and provisions a new schema otherwise. A tenant that exists is provisioned again if it
    /// failed, taken over if an attempt was left half-way, and left alone if it is active.
    func create(_ slug: TenantSlug, displayName: String?, placement: String?) async throws -> OnboardingReport {
        try await withSpan("tenancy.onboard") { span in
            span.attributes["tenant.slug"] = slug.rawValue
            // Another process onboarding the same slug at the same moment is waited for (up to
            // 30 s), so that both callers see the one outcome.
            let deadline = ContinuousClock.now + .seconds(30)
            var wait = Duration.milliseconds(50)
            while true {
                do {
                    let report = try await createOnce(slug, displayName: displayName, placement: placement)
                    span.attributes["tenancy.onboarding"] = report.outcome.rawValue
                    span.attributes["db.namespace"] = report.tenant.schema
                    return report
                } catch let error as TenancyError where [.provisioningInProgress, .concurrentChange].contains(error.code) && ContinuousClock.now + wait < deadline {
                    try await Task.sleep(for: wait)
                    wait = min(wait * 2, .seconds(1))
                }
            }
        }
    }

    private func createOnce(_ slug: TenantSlug, displayName: String?, placement: String?) async throws -> OnboardingReport {
        try await ready()
        let store = registry.store
        if let existing = try await store.record(slug: slug.rawValue) {
            return try await provision(slug, displayName: displayName, existing: existing, site: try await site(existing.placement))
        }
        let migrations = try requireMigrations()
        let site = try await site(try await choosePlacement(placement))
        do {
            if let claimed = try await claimSpare(slug, displayName: displayName, migrations: migrations, site: site) { return claimed }
            return try await provision(slug, displayName: displayName, existing: nil, site: site)
        } catch let error as TenancyError where error.code == .slugTaken {
            // Another process onboarded the same slug at the same moment.
            guard let existing = try await store.record(slug: slug.rawValue) else { throw error }
            return try await provision(slug, displayName: displayName, existing: existing, site: try await self.site(existing.placement))
        }
    }

    // MARK: - Spares

    /// Claims a spare at the current level, or brings the oldest spare up to it and claims
    /// that one.
    private func claimSpare(_ slug: TenantSlug, displayName: String?, migrations: TenantMigrations, site: Site) async throws -> OnboardingReport? {
        let store = registry.store
        let level = migrations.currentLevel
        let verifying = if case .atomic = site.mode { true } else { false }
        if verifying {
            if let claimed = try await store.claimSpare(id: nil, at: level, placement: site.placement, slug: slug, displayName: displayName, verifyingSchemaExists: true) {
                return try await claimedReport(claimed, appliedFiles: [])
            }
        } else {
            // The registry cannot see the schemas: each spare's is looked at before it is handed out.
            var after: Int64 = 0
            while let spare = try await store.spares(at: level, placement: site.placement, after: after, limit: 1).first {
                after = spare.id
                guard try await site.pool.database(schema: try SQLIdentifier(spare.schema)).schemaExists() else {
                    _ = try? await store.update(spare, TenantChange(state: .deleted, event: .discarded, detail: "its schema is gone"))
                    logger.warning("a spare whose schema is gone was discarded", metadata: [TenancyLoggingKeys.tenantSchema: "\(spare.schema)"])
                    continue
                }
                if let claimed = try await store.claimSpare(id: spare.id, at: level, placement: site.placement, slug: slug, displayName: displayName, verifyingSchemaExists: false) {
                    return try await claimedReport(claimed, appliedFiles: [])
                }
            }
        }
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        for spare in try await store.spares(limit: 3, placement: site.placement) where spare.level != level {
            let applied: [String]
            do {
                applied = try await Self.bringUpToDate(spare, provisioner: provisioner, store: store)
            } catch {
                logger.info("a spare could not be brought up to date; trying the next one", metadata: [
                    TenancyLoggingKeys.tenantSchema: "\(spare.schema)", LoggingKeys.error: "\(error)",
                ])
                continue
            }
            if let claimed = try await store.claimSpare(id: spare.id, at: level, placement: site.placement, slug: slug, displayName: displayName, verifyingSchemaExists: verifying) {
                return try await claimedReport(claimed, appliedFiles: applied)
            }
        }
        return nil
    }

    /// Applies the files `record`'s schema lacks (each under the schema's migration lock) and
    /// records the set's level, unless the schema holds files this set does not have: a newer
    /// release migrated it further and records its own level. The `migrated` event is logged
    /// only by the process that applied files, not by one that found them applied.
    /// - Returns: The files applied.
    static func bringUpToDate(_ record: TenantRecord, provisioner: Provisioner, store: any RegistryStore) async throws -> [String] {
        let schema = try SQLIdentifier(record.schema)
        let applied = try await provisioner.migrate(schema).applied.map(\.filename)
        if let level = provisioner.migrations.currentLevel,
           try await provisioner.migrations.migrator(for: provisioner.pool.database(schema: schema)).status().missing.isEmpty {
            try await store.recordLevel(id: record.id, level: level, event: applied.isEmpty ? nil : .migrated, detail: applied.joined(separator: ", "))
        }
        return applied
    }

    private func claimedReport(_ claimed: TenantRecord, appliedFiles: [String]) async throws -> OnboardingReport {
        claimedCounter.increment()
        let tenant = try claimed.requireTenant()
        // The slug had no row: no directory anywhere holds it, so there is nothing to announce.
        evict([tenant.slug.rawValue])
        logger.info("tenant onboarded from a spare", metadata: [TenancyLoggingKeys.tenantSlug: "\(tenant.slug)", TenancyLoggingKeys.tenantSchema: "\(tenant.schema)"])
        return OnboardingReport(tenant: tenant, outcome: .claimedSpare, appliedFiles: appliedFiles)
    }

    /// Provisions `count` spare schemas, `concurrency` at a time, after completing the spares
    /// an earlier fill left `provisioning` (killed half-way) that no live process holds.
    func fillSpares(count: Int, concurrency: Int, placement: String) async throws -> [SpareSchema] {
        let migrations = try requireMigrations()
        let site = try await site(placement)
        try await resumeInterruptedSpares(migrations, site: site)
        if count > 0 {
            guard try await openPlacement(placement) else {
                throw TenancyError(code: .invalidArgument, message: "placement \"\(placement)\" is draining and takes no new spares; fill another, or open it again")
            }
            let width = await site.pool.concurrencyTheServerAllows(max(1, min(concurrency, site.pool.connectionLimit ?? concurrency)))
            _ = try await forEachConcurrently(0..<count, width: width) { _ in try await self.provisionSpare(migrations, site: site) }
        }
        return try await registry.spares(on: placement)
    }

    /// Completes, or rolls back when a file fails, each spare row on `site` left `provisioning`: its
    /// schema is absent, empty or partly migrated. One whose lock a live process holds is left
    /// to that process; one that cannot be completed is logged and left for doctor to report.
    private func resumeInterruptedSpares(_ migrations: TenantMigrations, site: Site) async throws {
        let store = registry.store
        for stuck in try await store.records(in: [.provisioning]) where stuck.slug == nil && stuck.placement == site.placement {
            let target = StagedTarget(
                name: "spare schema \(stuck.schema)",
                write: { _ in stuck },
                completion: { _ in TenantChange(state: .spare, level: migrations.currentLevel, event: .adopted, detail: "an interrupted fill was completed") },
                rollBack: { row, _ in try await store.remove(row) })
            do {
                switch try await provisionInStages(try SQLIdentifier(stuck.schema), target: target, site: site, migrations: migrations) {
                case .completed:
                    logger.info("completed a spare an interrupted fill left behind", metadata: [TenancyLoggingKeys.tenantSchema: "\(stuck.schema)"])
                case .rolledBack(let error):
                    logger.warning("a spare an interrupted fill left behind was rolled back", metadata: [
                        TenancyLoggingKeys.tenantSchema: "\(stuck.schema)", LoggingKeys.error: "\(error)",
                    ])
                }
            } catch let error as TenancyError where Self.settledElsewhere.contains(error.code) {
                continue  // a live fill holds it, or the row moved on
            } catch {
                // Left for doctor to report; the fill itself goes on.
                logger.warning("a spare an interrupted fill left behind could not be completed", metadata: [
                    TenancyLoggingKeys.tenantSchema: "\(stuck.schema)", LoggingKeys.error: "\(error)",
                ])
            }
        }
    }

    private func provisionSpare(_ migrations: TenantMigrations, site: Site) async throws {
        let schema = try SQLIdentifier(makeSchemaName())
        try await withSpan("tenancy.spare.provision") { span in
            span.attributes["db.namespace"] = schema.name
            try await provisionSpare(schema, migrations, site: site)
        }
    }

    private func provisionSpare(_ schema: SQLIdentifier, _ migrations: TenantMigrations, site: Site) async throws {
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        let created = TenantChange(state: .spare, level: migrations.currentLevel, event: .spareCreated)
        if migrations.provisionsInStages {
            let store = registry.store
            let target = StagedTarget(
                name: "spare schema \(schema.name)",
                write: { try await $0.insert(.new(slug: nil, displayName: nil, schema: schema.name, placement: site.placement, state: .provisioning), event: .provisioning, detail: nil) },
                completion: { _ in created },
                rollBack: { row, _ in try await store.remove(row) })
            if case .rolledBack(let error) = try await provisionInStages(schema, target: target, site: site, migrations: migrations) { throw error }
            return
        }
        var written: TenantRecord?
        do {
            let row = try await site.pool.database(schema: nil).withTransaction { tx in
                switch site.mode {
                case .atomic(let store):
                    // The row commits with the schema: no other process sees it before. The lock
                    // (free: the name is new) tells a settling read when this transaction ended.
                    _ = try await Provisioner.lock(schema.name, in: tx)
                    _ = try await provisioner.create(schema, in: tx)
                    let row = TenantRecord.new(slug: nil, displayName: nil, schema: schema.name, placement: site.placement, state: .spare, level: migrations.currentLevel)
                    return try await store.session(in: tx).insert(row, event: .spareCreated, detail: nil)
                case .stepwise(let store):
                    // Held until the commit, so that reconcile leaves the row alone meanwhile;
                    // the name is new, so the lock is free.
                    _ = try await Provisioner.lock(schema.name, in: tx)
                    let row = try await store.insert(.new(slug: nil, displayName: nil, schema: schema.name, placement: site.placement, state: .provisioning), event: .provisioning, detail: nil)
                    written = row
                    _ = try await provisioner.create(schema, in: tx)
                    return row
                }
            }
            if case .stepwise(let store) = site.mode { _ = try await recordCommitted(row, created, in: store) }
        } catch {
            let condition = try? await settling {
                try await provisioner.waitForProvisioning(of: schema.name)
                return try await provisioner.condition(of: schema)
            }
            if condition?.isComplete == true {
                // The commit went through; only its reply was lost.
                if case .stepwise(let store) = site.mode, let written { _ = try await recordCommitted(written, created, in: store) }
                return
            }
            if case .stepwise(let store) = site.mode, let written, case .absent? = condition { try? await store.remove(written) }
            throw TenancyError(
                code: .provisioningFailed,
                message: condition == nil
                    ? "provisioning a spare schema failed (\(error)) and whether it was committed is unknown; tenantctl doctor --fix settles it"
                    : "provisioning a spare schema failed and was rolled back: \(error)",
                underlying: error)
        }
    }

    // MARK: - Provisioning

    /// Provisions `slug` in one PostgreSQL transaction: the schema's provisioning lock, the
    /// registry row, `CREATE SCHEMA` and the whole set (or the files a complete-but-behind
    /// schema lacks), and, with the registry in the same database, the activation.
    private func provision(_ slug: TenantSlug, displayName: String?, existing: TenantRecord?, site: Site) async throws -> OnboardingReport {
        if let existing {
            switch existing.state {
            case .active:
                return OnboardingReport(tenant: try existing.requireTenant(), outcome: .alreadyActive, appliedFiles: [])
            case .suspended:
                throw TenancyError(code: .tenantSuspended, message: "tenant \"\(slug)\" exists and is suspended; resume it instead", slug: slug.rawValue)
            case .deleting, .deleted:
                throw TenancyError(code: .tenantDeleted, message: "tenant \"\(slug)\" was deleted; choose another slug", slug: slug.rawValue)
            case .moving:
                throw TenancyError.moving(existing)
            case .provisioning, .failed, .spare:
                break
            }
        }
        let migrations = try requireMigrations()
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        let schema = try SQLIdentifier(existing?.schema ?? makeSchemaName())
        let beginning = { (writer: any RegistryWriter) async throws -> TenantRecord in
            guard let existing else {
                return try await writer.insert(.new(slug: slug.rawValue, displayName: displayName, schema: schema.name, placement: site.placement, state: .provisioning), event: .provisioning, detail: nil)
            }
            // A failed tenant is retried; a row left provisioning by a dead attempt is taken over,
            // as it was read: one that moved on meanwhile (another process completed it before
            // this one got the lock) sends this attempt back to read it again.
            guard existing.state == .provisioning else {
                return try await writer.update(existing, TenantChange(state: .provisioning, lastError: .some(nil), event: .provisioning, detail: "retry"))
            }
            let current = try await self.registry.store.record(id: existing.id)
            guard current?.generation == existing.generation else { throw TenancyError.concurrentChange(existing, now: current) }
            return existing
        }
        if migrations.provisionsInStages {
            let store = registry.store
            let target = StagedTarget(
                name: "tenant \"\(slug)\"",
                write: beginning,
                completion: { Self.activation(migrations, adopted: $0) },
                rollBack: { row, error in _ = try await store.update(row, TenantChange(state: .failed, lastError: .some("\(error)"), event: .failed, detail: "\(error)")) })
            switch try await provisionInStages(schema, target: target, site: site, migrations: migrations) {
            case .completed(let row, let appliedFiles, let adopted):
                return try await activated(row, outcome: adopted ? .adopted : .provisioned, appliedFiles: appliedFiles, announcing: existing != nil)
            case .rolledBack(let error):
                await changed([slug.rawValue])
                throw error
            }
        }
        var written: TenantRecord?
        do {
            let (row, report, adopted) = try await site.pool.database(schema: nil).withTransaction { tx in
                guard try await Provisioner.lock(schema.name, in: tx) else {
                    throw TenancyError(code: .provisioningInProgress, message: "tenant \"\(slug)\" is being provisioned by another process; wait for it to finish", slug: slug.rawValue)
                }
                let writer: any RegistryWriter = switch site.mode {
                case .atomic(let store): try store.session(in: tx)
                case .stepwise(let store): store
                }
                var row = try await beginning(writer)
                written = row
                let report: MigrationReport
                let adopted: Bool
                switch try await provisioner.condition(of: schema, on: tx) {
                case .absent:
                    (report, adopted) = (try await provisioner.create(schema, in: tx), false)
                case .present(let status) where status.changed.isEmpty && status.missing.isEmpty:
                    (report, adopted) = (try await provisioner.complete(schema, in: tx), true)
                case .present:
                    throw TenancyError(
                        code: .provisioningFailed,
                        message: "schema \(schema.name) of tenant \"\(slug)\" exists but its migrations do not match the migration set; check it with tenantctl doctor",
                        slug: slug.rawValue)
                }
                if case .atomic = site.mode { row = try await writer.update(row, Self.activation(migrations, adopted: adopted)) }
                return (row, report, adopted)
            }
            let active = switch site.mode {
            case .atomic: row
            case .stepwise(let store): try await recordCommitted(row, Self.activation(migrations, adopted: adopted), in: store)
            }
            return try await activated(active, outcome: adopted ? .adopted : .provisioned, appliedFiles: report.applied.map(\.filename), announcing: existing != nil)
        } catch let error as TenancyError where Self.settledElsewhere.contains(error.code) {
            throw error
        } catch {
            return try await settleFailedProvisioning(slug, schema: schema, existing: existing, written: written, site: site, migrations: migrations, error: error)
        }
    }

    /// After a provisioning transaction that threw: reports success if it committed after all
    /// (its reply was lost), and otherwise records the tenant `failed`.
    private func settleFailedProvisioning(
        _ slug: TenantSlug, schema: SQLIdentifier, existing: TenantRecord?, written: TenantRecord?, site: Site, migrations: TenantMigrations, error: any Error
    ) async throws -> OnboardingReport {
        let store = registry.store
        let unknown = TenancyError(
            code: .databaseFailed,
            message: "provisioning tenant \"\(slug)\" failed (\(error)) and whether it was committed is unknown; run the same command again to finish or retry it",
            slug: slug.rawValue, underlying: error)
        let failed = TenantChange(state: .failed, lastError: .some("\(error)"), event: .failed, detail: "\(error)")
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        switch site.mode {
        case .atomic:
            // The registry row commits with the schema: it tells whether the commit happened.
            let now: TenantRecord?
            do {
                now = try await settling {
                    try await provisioner.waitForProvisioning(of: schema.name)
                    return try await store.record(slug: slug.rawValue)
                }
            } catch {
                throw unknown
            }
            if let now, now.state == .active, now.schema == schema.name {
                return try await activated(now, outcome: existing == nil ? .provisioned : .adopted, appliedFiles: [], announcing: existing != nil)
            }
            if let now, now.state == .failed || now.state == .provisioning {
                _ = try? await store.update(now, failed)
            } else if now == nil {
                var row = TenantRecord.new(slug: slug.rawValue, displayName: nil, schema: schema.name, placement: site.placement, state: .failed)
                row.lastError = "\(error)"
                _ = try? await store.insert(row, event: .failed, detail: "\(error)")
            }
        case .stepwise:
            guard let written else { throw error }
            guard let condition = try? await settling({
                try await provisioner.waitForProvisioning(of: schema.name)
                return try await provisioner.condition(of: schema)
            }) else { throw unknown }
            if condition.isComplete {
                let active = try await recordCommitted(written, Self.activation(migrations, adopted: true), in: store)
                return try await activated(active, outcome: .adopted, appliedFiles: [], announcing: existing != nil)
            }
            _ = try? await store.update(written, failed)
        }
        await changed([slug.rawValue])
        failedCounter.increment()
        logger.debug("provisioning failed", metadata: [TenancyLoggingKeys.tenantSlug: "\(slug)", LoggingKeys.error: "\(error)"])
        throw TenancyError(
            code: .provisioningFailed,
            message: "provisioning tenant \"\(slug)\" failed and was rolled back: \(error); fix the cause and provision again",
            slug: slug.rawValue, underlying: error)
    }

    /// Errors that mean another process holds the slug or the attempt: nothing to record.
    static let settledElsewhere: Set<TenancyError.Code> = [.provisioningInProgress, .slugTaken, .slugRecentlyReleased, .concurrentChange]

    static func activation(_ migrations: TenantMigrations, adopted: Bool) -> TenantChange {
        TenantChange(state: .active, level: migrations.currentLevel, lastError: .some(nil), event: adopted ? .adopted : .provisioned)
    }

    /// - Parameter announcing: Whether other processes may hold the slug: a tenant that existed
    ///   (failed, say) before this provisioning. A slug with no row before is cached nowhere.
    private func activated(_ record: TenantRecord, outcome: OnboardingReport.Outcome, appliedFiles: [String], announcing: Bool) async throws -> OnboardingReport {
        let tenant = try record.requireTenant()
        if announcing { await changed([tenant.slug.rawValue]) } else { evict([tenant.slug.rawValue]) }
        if outcome == .provisioned { provisionedCounter.increment() }
        logger.info(outcome == .adopted ? "adopted the schema of an interrupted provisioning" : "tenant provisioned", metadata: [
            TenancyLoggingKeys.tenantSlug: "\(tenant.slug)", TenancyLoggingKeys.tenantSchema: "\(tenant.schema)",
        ])
        return OnboardingReport(tenant: tenant, outcome: outcome, appliedFiles: appliedFiles)
    }
}
