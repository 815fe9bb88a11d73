/// The one error type of `Tenancy`.
///
/// Its ``description`` is one line naming the problem, the tenant and what to do. Database
/// errors from `SchemaDB` are kept in ``underlying`` and summarised in the message.
public struct TenancyError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong. New codes may be added in minor releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidSlug, tenantNotFound, tenantSuspended, tenantDeleted, slugTaken, slugRecentlyReleased
            case provisioningInProgress, provisioningFailed, illegalTransition, concurrentChange, confirmationRequired
            case registryFailed, registryBusy, registryNotFound, registryTooNew, registryMismatch
            case databaseFailed, migrationFailed, migrationPending, migrationSetUnavailable
            case fleetLocked, fleetRunNotFound, fleetRunInterrupted, invalidArgument
            case placementNotFound, placementExists, placementUnreachable, placementMismatch, tenantMoving
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A slug that breaks the naming rules or is reserved.
        public static let invalidSlug = Self(.invalidSlug)
        /// No tenant has this slug.
        public static let tenantNotFound = Self(.tenantNotFound)
        /// The tenant is suspended: its handles are refused.
        public static let tenantSuspended = Self(.tenantSuspended)
        /// The tenant was deleted.
        public static let tenantDeleted = Self(.tenantDeleted)
        /// Another tenant has this slug.
        public static let slugTaken = Self(.slugTaken)
        /// Another tenant gave this slug up by a rename moments ago; it is free again once no
        /// directory can still route it to that tenant (``RegistryInfo/slugReuseDelay``).
        public static let slugRecentlyReleased = Self(.slugRecentlyReleased)
        /// Another process is provisioning this tenant right now.
        public static let provisioningInProgress = Self(.provisioningInProgress)
        /// Provisioning failed and was rolled back; the tenant is `failed`.
        public static let provisioningFailed = Self(.provisioningFailed)
        /// The lifecycle does not allow this change of state.
        public static let illegalTransition = Self(.illegalTransition)
        /// Another process changed the tenant between the read and the write; nothing was
        /// written. Read it again and retry.
        public static let concurrentChange = Self(.concurrentChange)
        /// A destructive operation was called without confirmation.
        public static let confirmationRequired = Self(.confirmationRequired)
        /// The registry file cannot be opened, migrated, read or written.
        public static let registryFailed = Self(.registryFailed)
        /// The registry stayed locked by another process for too long.
        public static let registryBusy = Self(.registryBusy)
        /// There is no registry where one was expected, and creating one was not asked for.
        public static let registryNotFound = Self(.registryNotFound)
        /// A newer version of Tenancy wrote the registry.
        public static let registryTooNew = Self(.registryTooNew)
        /// The registry describes another database or schema prefix than the one in use.
        public static let registryMismatch = Self(.registryMismatch)
        /// A PostgreSQL operation failed; see ``TenancyError/underlying``.
        public static let databaseFailed = Self(.databaseFailed)
        /// Migrating a tenant's schema failed; see ``TenancyError/underlying``.
        public static let migrationFailed = Self(.migrationFailed)
        /// The tenant's schema is behind this process's migration set: it is refused until it is
        /// migrated (``Tenancy/migrateAllTenants(concurrency:fleetLockWait:)``, `tenantctl migrate`).
        public static let migrationPending = Self(.migrationPending)
        /// The operation needs the tenant migration set, and none was loaded.
        public static let migrationSetUnavailable = Self(.migrationSetUnavailable)
        /// Another fleet run holds the fleet lock of this database.
        public static let fleetLocked = Self(.fleetLocked)
        /// The registry has no fleet run with this id.
        public static let fleetRunNotFound = Self(.fleetRunNotFound)
        /// A fleet run stopped before its end because the database or the registry could not be
        /// reached; the message names the run to resume.
        public static let fleetRunInterrupted = Self(.fleetRunInterrupted)
        /// An option or argument is out of range.
        public static let invalidArgument = Self(.invalidArgument)
        /// The registry has no placement with this name.
        public static let placementNotFound = Self(.placementNotFound)
        /// A placement with this name, or of this database, is already in the registry.
        public static let placementExists = Self(.placementExists)
        /// A placement's database cannot be reached, or its pool cannot be opened: only the
        /// tenants placed there are refused.
        public static let placementUnreachable = Self(.placementUnreachable)
        /// The tenant is being moved to another placement: it is not served, and other changes
        /// wait until the move finishes or is rolled back.
        public static let tenantMoving = Self(.tenantMoving)
        /// A placement's URL now leads to another database than the one recorded when it was
        /// added: nothing is done there.
        public static let placementMismatch = Self(.placementMismatch)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// One sentence naming the problem and what to do.
    public var message: String
    /// The tenant concerned, when there is one.
    public var slug: String?
    /// The error this one wraps, such as a `SchemaDBError`.
    public var underlying: (any Error)?
    /// Where the error was raised.
    public var file: String
    /// Where the error was raised.
    public var line: Int

    /// Creates an error.
    public init(code: Code, message: String, slug: String? = nil, underlying: (any Error)? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.slug = slug
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    public var description: String { message.split(whereSeparator: \.isNewline).joined(separator: " ") }

    public var debugDescription: String {
        "TenancyError(code: \(code), \(description), at: \(file):\(line)\(underlying.map { ", underlying: \($0)" } ?? ""))"
    }
}

extension TenancyError {
    static func invalidSlug(_ slug: String, _ problem: String) -> Self {
        let shown = slug.count > 60 ? String(slug.prefix(60)) + "…" : slug
        return Self(code: .invalidSlug, message: "invalid tenant slug \"\(shown.debugDescriptionEscaped)\": \(problem); use 2 to 50 lowercase letters, digits and '-', starting with a letter")
    }

    static func notFound(_ slug: String) -> Self {
        Self(code: .tenantNotFound, message: "no tenant \"\(slug)\"; check the slug or create the tenant first", slug: slug)
    }

    static func slugTaken(_ slug: String, by holder: TenantRecord) -> Self {
        Self(code: .slugTaken, message: "tenant \"\(slug)\" already exists (\(holder.state.rawValue)); choose another slug", slug: slug)
    }

    static func slugRecentlyReleased(_ slug: String, availableIn wait: Duration) -> Self {
        let seconds = max(1, (wait.components.seconds) + (wait.components.attoseconds > 0 ? 1 : 0))
        return Self(
            code: .slugRecentlyReleased,
            message: "the slug \"\(slug)\" was given up by another tenant's rename moments ago and is free again in \(seconds) s, once no server can still route it to that tenant; wait, or choose another slug",
            slug: slug)
    }

    static func placementNotFound(_ name: String) -> Self {
        Self(code: .placementNotFound, message: "no placement \"\(name.debugDescriptionEscaped)\"; list them with `tenantctl placements list`, or add it with `tenantctl placements add`")
    }

    /// Placement `placement`'s URL now leads to the database `identity`.
    static func placementMismatch(_ placement: Placement, now identity: DatabaseIdentity) -> Self {
        Self(
            code: .placementMismatch,
            message: "placement \"\(placement.name)\" was added as \(placement.identity.map { "\($0)" } ?? "?"), and its URL now leads to \(identity); nothing is done there until the URL is corrected")
    }

    /// Why placement `name` (as now found, or `nil`) was not removed, `tenants` of whose
    /// tenants, spares or moves still name it.
    static func placementNotRemoved(_ name: String, found placement: Placement?, tenants: Int) -> Self {
        guard let placement else { return placementNotFound(name) }
        let reason: String
        if placement.name == Placement.defaultName {
            reason = "it is the registry's own database; it cannot be removed"
        } else if placement.state == .open {
            reason = "it is open; drain it first (tenantctl placements drain \(name)), move its tenants away (tenantctl rebalance --apply), then remove it"
        } else {
            reason = "\(tenants) tenants, spares or moves still name it; move them away (tenantctl rebalance --apply) or drop them first"
        }
        return Self(code: .invalidArgument, message: "placement \"\(name)\" was not removed: \(reason)")
    }

    static func placementExists(_ name: String, identity: DatabaseIdentity? = nil) -> Self {
        Self(code: .placementExists, message: identity.map { "\($0) is already a placement; each database can be one placement only" }
             ?? "placement \"\(name)\" already exists; choose another name")
    }

    static func moving(_ record: TenantRecord) -> Self {
        Self(code: .tenantMoving,
             message: "\(record.name) is being moved to placement \"\(record.move?.target ?? "?")\"; try again once the move ends (tenantctl move --resume finishes an interrupted one)",
             slug: record.slug)
    }

    static func concurrentChange(_ record: TenantRecord, now current: TenantRecord?) -> Self {
        let what = current.map { "it is now \($0.state.rawValue)" + ($0.slug != record.slug ? ($0.slug.map { " as \"\($0)\"" } ?? "") : "") } ?? "it is gone"
        return Self(
            code: .concurrentChange,
            message: "\(record.name) was changed by another process while this change was made (\(what)); nothing was written, look at it again and retry",
            slug: record.slug)
    }
}

extension String {
    /// The string with control characters and quotes escaped, for quoting user input in messages.
    var debugDescriptionEscaped: String {
        let escaped = String(reflecting: self)
        return String(escaped.dropFirst().dropLast())
    }
}
