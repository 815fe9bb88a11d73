/// The one error type of `Tenancy`.
///
/// Its ``description`` is one line naming the problem, the tenant and what to do. Database
/// errors from `SchemaDB` are kept in ``underlying`` and summarised in the message.
public struct TenancyError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong. New codes may be added in minor releases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidSlug, tenantNotFound, tenantSuspended, tenantDeleted, slugTaken
            case provisioningInProgress, provisioningFailed, illegalTransition, confirmationRequired
            case registryFailed, registryBusy, databaseFailed, migrationFailed
            case fleetLocked, fleetRunNotFound, invalidArgument
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
        /// Another process is provisioning this tenant right now.
        public static let provisioningInProgress = Self(.provisioningInProgress)
        /// Provisioning failed and was rolled back; the tenant is `failed`.
        public static let provisioningFailed = Self(.provisioningFailed)
        /// The lifecycle does not allow this change of state.
        public static let illegalTransition = Self(.illegalTransition)
        /// A destructive operation was called without confirmation.
        public static let confirmationRequired = Self(.confirmationRequired)
        /// The registry file cannot be opened, migrated, read or written.
        public static let registryFailed = Self(.registryFailed)
        /// The registry stayed locked by another process for too long.
        public static let registryBusy = Self(.registryBusy)
        /// A PostgreSQL operation failed; see ``TenancyError/underlying``.
        public static let databaseFailed = Self(.databaseFailed)
        /// Migrating a tenant's schema failed; see ``TenancyError/underlying``.
        public static let migrationFailed = Self(.migrationFailed)
        /// Another fleet run holds the fleet lock of this database.
        public static let fleetLocked = Self(.fleetLocked)
        /// The registry has no fleet run with this id.
        public static let fleetRunNotFound = Self(.fleetRunNotFound)
        /// An option or argument is out of range.
        public static let invalidArgument = Self(.invalidArgument)

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

    static func registry(_ action: String, _ error: any Error) -> Self {
        Self(code: .registryFailed, message: "the tenant registry could not \(action): \(error)", underlying: error)
    }
}

extension String {
    /// The string with control characters and quotes escaped, for quoting user input in messages.
    var debugDescriptionEscaped: String {
        let escaped = String(reflecting: self)
        return String(escaped.dropFirst().dropLast())
    }
}
