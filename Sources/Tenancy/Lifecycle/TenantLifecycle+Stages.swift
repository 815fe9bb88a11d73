import Logging
import Metrics
import SchemaDB

/// Provisioning for a migration set with files that run outside a transaction
/// (`-- pgdbm:no-transaction`, such as `CREATE INDEX CONCURRENTLY`): the schema cannot commit
/// in one transaction with its files, so it is built in stages under one lock, and the row
/// stays `provisioning`, never served, until the last file is in.
extension TenantLifecycle {
    /// What a provisioning in stages is for.
    struct StagedTarget {
        /// Names the tenant or spare in errors.
        let name: String
        /// Writes the row, `provisioning`, with the schema (atomic) or before it (stepwise).
        let write: (any RegistryWriter) async throws -> TenantRecord
        /// The row's change once every file is in; `true` when the schema existed before.
        let completion: (_ adopted: Bool) -> TenantChange
        /// Records that the provisioning failed and its schema was dropped.
        let rollBack: (TenantRecord, any Error) async throws -> Void
    }

    /// How a provisioning in stages ended, to be announced once its connection is given back.
    enum StagedOutcome {
        case completed(TenantRecord, appliedFiles: [String], adopted: Bool)
        case rolledBack(TenancyError)
    }

    /// Provisions `schema` in stages on one connection that holds the schema's provisioning
    /// lock throughout, so that reconcile and other attempts leave it alone: the row and an
    /// empty schema commit first, then the set is applied file by file, then the row takes
    /// its final state. A failure drops the incomplete schema and rolls the row back; when
    /// the outcome cannot be known (a lost connection), the row stays `provisioning` and the
    /// next attempt completes the schema.
    func provisionInStages(_ schema: SQLIdentifier, target: StagedTarget, site: Site, migrations: TenantMigrations) async throws -> StagedOutcome {
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        return try await site.pool.database(schema: nil).withConnection { session in
            // Checked when the lease ends: a session lock left behind closes the connection.
            session.markForeignSQL()
            guard try await Provisioner.lock(schema.name, on: session) else {
                throw TenancyError(code: .provisioningInProgress, message: "\(target.name) is being provisioned by another process; wait for it to finish")
            }
            var written: TenantRecord?
            var writtenBeforeCommit: TenantRecord?
            var adopted = false
            do {
                written = try await session.withTransaction { tx in
                    let writer: any RegistryWriter = switch site.mode {
                    case .atomic(let store): try store.session(in: tx)
                    case .stepwise(let store): store
                    }
                    let row = try await target.write(writer)
                    if case .stepwise = site.mode { writtenBeforeCommit = row }
                    switch try await provisioner.condition(of: schema, on: tx) {
                    case .absent:
                        try await provisioner.createEmpty(schema, in: tx)
                    case .present(let status) where status.changed.isEmpty && status.missing.isEmpty:
                        adopted = true
                    case .present:
                        throw TenancyError(
                            code: .provisioningFailed,
                            message: "schema \(schema.name) of \(target.name) exists but its migrations do not match the migration set; check it with tenantctl doctor")
                    }
                    return row
                }
            } catch {
                // A stepwise row committed before the schema's transaction failed: roll it back.
                let settledElsewhere = (error as? TenancyError).map { Self.settledElsewhere.contains($0.code) } ?? false
                if let row = writtenBeforeCommit, !settledElsewhere { try? await target.rollBack(row, error) }
                try? await Provisioner.unlock(schema.name, on: session)
                throw error
            }
            guard let written else { preconditionFailure("the first stage returns its row") }
            do {
                let report = try await provisioner.migrate(schema, on: session)
                let completed: TenantRecord = switch site.mode {
                case .atomic(let store): try await session.withTransaction { tx in try await store.session(in: tx).update(written, target.completion(adopted)) }
                case .stepwise(let store): try await recordCommitted(written, target.completion(adopted), in: store)
                }
                try? await Provisioner.unlock(schema.name, on: session)
                return .completed(completed, appliedFiles: report.applied.map(\.filename), adopted: adopted)
            } catch {
                do {
                    let outcome = try await settleFailedStages(schema, site: site, written: written, target: target, migrations: migrations, error: error)
                    try? await Provisioner.unlock(schema.name, on: session)
                    return outcome
                } catch {
                    try? await Provisioner.unlock(schema.name, on: session)
                    throw error
                }
            }
        }
    }

    /// After a stage that threw, still holding the lock: completes the row if every file went
    /// in after all (a lost reply), and otherwise drops the schema and rolls the row back.
    private func settleFailedStages(_ schema: SQLIdentifier, site: Site, written: TenantRecord, target: StagedTarget, migrations: TenantMigrations, error: any Error) async throws -> StagedOutcome {
        let store = registry.store
        let provisioner = Provisioner(pool: site.pool, migrations: migrations)
        let read: (Provisioner.SchemaCondition, TenantRecord?)? = try? await settling {
            // A lost session still runs its last file until the server notices: wait for its lock.
            if Self.isConnectionLoss(error) { try await provisioner.waitForProvisioning(of: schema.name) }
            return (try await provisioner.condition(of: schema), try await store.record(id: written.id))
        }
        guard let (condition, current) = read, let row = current else {
            throw TenancyError(
                code: .databaseFailed,
                message: "provisioning \(target.name) failed (\(error)) and how far it got is unknown; it is not served, and running the same command again finishes or retries it",
                slug: written.slug, underlying: error)
        }
        let final = target.completion(true)
        if row.state == final.state { return .completed(row, appliedFiles: [], adopted: true) }
        if condition.isComplete {
            let completed = try await recordCommitted(row, final, in: store)
            return .completed(completed, appliedFiles: [], adopted: true)
        }
        do {
            try await site.pool.database(schema: nil).withTransaction { tx in try await Provisioner.drop(schema, in: tx, lockTimeout: lockTimeout) }
        } catch let dropError {
            throw TenancyError(
                code: .databaseFailed,
                message: "provisioning \(target.name) failed (\(error)) and its incomplete schema could not be dropped (\(dropError)); it is not served, and running the same command again finishes or retries it",
                slug: written.slug, underlying: error)
        }
        try await target.rollBack(row, error)
        failedCounter.increment()
        logger.debug("provisioning failed", metadata: [TenancyLoggingKeys.tenantSchema: "\(schema.name)", LoggingKeys.error: "\(error)"])
        return .rolledBack(TenancyError(
            code: .provisioningFailed,
            message: "provisioning \(target.name) failed and was rolled back: \(error); fix the cause and provision again",
            slug: written.slug, underlying: error))
    }
}
