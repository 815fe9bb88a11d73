/// Where a tenant is in its lifecycle.
///
/// ```
/// provisioning → active ⇄ suspended → deleted
///      │           └──────────────────→ deleted
///      ├→ failed → provisioning (retry)
///      └→ spare → active (claimed at onboarding)
/// ```
public enum TenantState: String, Sendable, Codable, CaseIterable, Comparable {
    /// The schema is being created and migrated.
    case provisioning
    /// Serving: its handles are handed out.
    case active
    /// Kept but not served: handles are refused until it is resumed.
    case suspended
    /// The schema was dropped; the row stays as a tombstone.
    case deleted
    /// Provisioning failed; nothing was left in the database. Provisioning again retries.
    case failed
    /// A pre-provisioned schema with no tenant yet, waiting to be claimed.
    case spare

    /// The states this state may move to.
    public var allowedTransitions: Set<TenantState> {
        switch self {
        case .provisioning: [.active, .failed, .spare]
        case .active: [.suspended, .deleted]
        case .suspended: [.active, .deleted]
        case .deleted: []
        case .failed: [.provisioning, .deleted]
        case .spare: [.active, .deleted]
        }
    }

    /// Whether moving to `next` is allowed.
    public func canMove(to next: TenantState) -> Bool { allowedTransitions.contains(next) }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
