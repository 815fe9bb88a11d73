import Logging
import SchemaDB

extension Tenancy {
    /// Settings of ``Tenancy/prepareForServing(_:)``. Every one has a default.
    public struct StartupOptions: Sendable, Hashable {
        /// Migrate every tenant before serving. Turn it off when another process (a deploy
        /// job, `tenantctl migrate`) owns migrations: the levels are then only checked.
        /// Defaults to `true`.
        public var migrates: Bool = true
        /// Tenants migrated at once. Defaults to 4.
        public var concurrency: Int = 4
        /// The longest wait for another process's fleet run, logged every few seconds. Keep it
        /// within the orchestrator's start-up probe. Defaults to 30 s.
        public var fleetLockWait: Duration = .seconds(30)

        public init() {}
    }

    /// What ``Tenancy/prepareForServing(_:)`` did.
    public struct StartupReport: Sendable, Hashable {
        /// The fleet run this process made; `nil` when it did not migrate, or another process's
        /// run outlasted the wait.
        public var fleetRun: FleetReport?
        /// The fleet's levels after it: the tenants ``MigrationLevelCheck/behind`` are refused.
        public var levels: MigrationLevelCheck
    }

    /// Compares every active and suspended tenant's recorded migration level with this
    /// process's migration set, from the registry alone. The directory refuses the tenants it
    /// finds ``MigrationLevelCheck/behind`` (``TenancyError/Code/migrationPending``).
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/migrationSetUnavailable`` when no
    ///   set is loaded, or when the registry cannot be read.
    public func checkMigrationLevels() async throws -> MigrationLevelCheck {
        guard let migrations = lifecycle.migrations else {
            throw TenancyError(code: .migrationSetUnavailable, message: "checking migration levels needs the tenant migration set, and none was loaded; set the migrations directory")
        }
        try await ready()
        var check = MigrationLevelCheck(currentLevel: migrations.currentLevel, current: 0, ahead: [], behind: [])
        for record in try await registry.store.records(in: [.active, .suspended]) {
            guard let tenant = record.tenant else { continue }
            switch migrations.standing(of: tenant.migrationLevel) {
            case .current: check.current += 1
            case .ahead: check.ahead.append(tenant)
            case .behind(let pending): check.behind.append(.init(tenant: tenant, pendingFiles: pending))
            }
        }
        return check
    }

    /// What a server does before it serves, in `beforeServerStarts`: migrates every tenant
    /// (unless ``StartupOptions/migrates`` is off, when another process owns migrations), then
    /// checks the fleet's levels.
    ///
    /// One tenant cannot keep the server from starting: a tenant whose migration fails, like
    /// every tenant still behind, is logged and refused by the directory
    /// (``TenancyError/Code/migrationPending``) until it is migrated, and the server starts. A
    /// fleet run of another process (another replica, `tenantctl migrate`) is waited for up to
    /// ``StartupOptions/fleetLockWait``, logged every few seconds; past it the server starts and
    /// refuses the tenants that run has not reached yet, serving each once it is migrated.
    /// - Throws: ``TenancyError`` when the registry or the database cannot be used at all
    ///   (``TenancyError/Code/fleetRunInterrupted``, ``TenancyError/Code/registryFailed``, …).
    @discardableResult
    public func prepareForServing(_ options: StartupOptions = .init()) async throws -> StartupReport {
        var report = StartupReport(fleetRun: nil, levels: MigrationLevelCheck(currentLevel: nil, current: 0, ahead: [], behind: []))
        if options.migrates {
            var fleetOptions = FleetMigrator.Options()
            fleetOptions.concurrency = options.concurrency
            fleetOptions.fleetLockWait = options.fleetLockWait
            do {
                let run = try await fleet.run(.all, options: fleetOptions)
                report.fleetRun = run
                for failure in run.failures {
                    logger.error("tenant migration failed at start-up; the tenant is refused until it is migrated", metadata: [
                        TenancyLoggingKeys.fleetRun: "\(run.run.id)", TenancyLoggingKeys.tenantSlug: "\(failure.slug ?? "")",
                        TenancyLoggingKeys.tenantSchema: "\(failure.schema)", LoggingKeys.error: "\(failure.error ?? "")",
                    ])
                }
            } catch let error as TenancyError where error.code == .fleetLocked {
                logger.warning("another process's fleet migration outlasted the start-up wait; starting, and refusing the tenants it has not migrated yet", metadata: [
                    "fleet.wait_limit_s": "\(options.fleetLockWait.wholeMilliseconds / 1000)",
                ])
            }
        }
        report.levels = try await checkMigrationLevels()
        let levels = report.levels
        if !levels.isReady {
            logger.warning("tenants behind the migration set are refused until they are migrated", metadata: [
                "tenancy.behind": "\(levels.behind.count)",
                "tenancy.behind_first": "\(levels.behind.prefix(5).map(\.tenant.slug.rawValue).joined(separator: ","))",
                "tenancy.current_level": "\(levels.currentLevel?.lastFile ?? "")",
            ])
        }
        logger.info("ready to serve", metadata: [
            "tenancy.current": "\(levels.current)", "tenancy.ahead": "\(levels.ahead.count)", "tenancy.behind": "\(levels.behind.count)",
        ])
        return report
    }
}
