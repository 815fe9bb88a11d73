/// Where a tenant is in its lifecycle.
///
/// ```
/// provisioning → active ⇄ suspended
///      │           └──→ deleting ←──┘ → deleted   (a failed drop goes back where it was)
///      ├→ failed → provisioning (retry), active (its schema was complete), deleting
///      └→ spare → active (claimed at onboarding), deleting, deleted (its schema is gone)
/// active, suspended → moving → the state it left (on the new placement, or rolled back)
/// ```
public enum TenantState: String, Sendable, Codable, CaseIterable, Comparable {
    /// The schema is being created and migrated.
    case provisioning
    /// Serving: its handles are handed out.
    case active
    /// Kept but not served: handles are refused until it is resumed.
    case suspended
    /// Being dropped: no longer served; a drop run again finishes it.
    case deleting
    /// The schema was dropped; the row stays as a tombstone.
    case deleted
    /// Provisioning failed. Provisioning again retries, or adopts a schema that was complete.
    case failed
    /// A pre-provisioned schema with no tenant yet, waiting to be claimed.
    case spare
    /// Being copied to another placement: not served, and locked against other changes until
    /// the move finishes or is rolled back.
    case moving

    /// The states this state may move to.
    public var allowedTransitions: Set<TenantState> {
        switch self {
        case .provisioning: [.active, .failed, .spare]
        case .active: [.suspended, .deleting, .moving]
        case .suspended: [.active, .deleting, .moving]
        case .deleting: [.deleted, .active, .suspended, .failed, .spare]
        case .deleted: []
        case .failed: [.provisioning, .active, .deleting]
        case .spare: [.active, .deleting, .deleted]
        case .moving: [.active, .suspended]
        }
    }

    /// Whether moving to `next` is allowed.
    public func canMove(to next: TenantState) -> Bool { allowedTransitions.contains(next) }

    /// Whether the tenant's schema is expected to exist and be kept migrated.
    public var hasSchema: Bool {
        switch self {
        case .active, .suspended, .spare: true
        case .provisioning, .deleting, .deleted, .failed, .moving: false
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
