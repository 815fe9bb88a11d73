/// What ``Tenancy/create(_:displayName:)`` did.
public struct OnboardingReport: Sendable, Hashable {
    /// How the tenant came to be active.
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// A new schema was created and migrated.
        case provisioned
        /// A spare schema was claimed: no DDL.
        case claimedSpare = "claimed_spare"
        /// The schema of an interrupted or unanswered attempt was complete and was adopted.
        case adopted
        /// The tenant was already active; nothing changed.
        case alreadyActive = "already_active"
    }

    /// The tenant, active.
    public var tenant: Tenant
    /// How it came to be active.
    public var outcome: Outcome
    /// Migration files applied by this call.
    public var appliedFiles: [String]
}
