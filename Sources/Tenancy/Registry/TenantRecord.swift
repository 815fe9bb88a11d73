import Foundation

/// A row of the registry's `tenants` table: a tenant, or a spare schema (no slug).
struct TenantRecord: Sendable, Hashable {
    var id: Int64
    var slug: String?
    var displayName: String?
    var schema: String
    var placement: String
    var state: TenantState
    var generation: Int64
    var migrationFile: String?
    var migrationChecksum: String?
    var createdAt: Date
    var updatedAt: Date
    var lastError: String?
    /// Where a `moving` tenant is going, and the state it goes back to.
    var move: TenantMove?

    /// A row to insert: `id` and `generation` are assigned by the store.
    static func new(slug: String?, displayName: String?, schema: String, placement: String, state: TenantState, level: MigrationLevel? = nil, now: Date = Date()) -> Self {
        TenantRecord(
            id: 0, slug: slug, displayName: displayName, schema: schema, placement: placement, state: state, generation: 1,
            migrationFile: level?.lastFile, migrationChecksum: level?.setChecksum, createdAt: now, updatedAt: now, lastError: nil, move: nil)
    }

    var level: MigrationLevel? {
        get {
            guard let migrationFile, let migrationChecksum else { return nil }
            return MigrationLevel(lastFile: migrationFile, setChecksum: migrationChecksum)
        }
        set {
            migrationFile = newValue?.lastFile
            migrationChecksum = newValue?.setChecksum
        }
    }

    /// The tenant, or `nil` for a spare.
    var tenant: Tenant? {
        guard let slug else { return nil }
        return Tenant(
            id: id, slug: TenantSlug(registryValue: slug), displayName: displayName, schema: schema, placement: placement, state: state,
            generation: generation, migrationLevel: level, createdAt: createdAt, updatedAt: updatedAt, lastError: lastError, moveTarget: move?.target)
    }

    var spare: SpareSchema {
        SpareSchema(id: id, schema: schema, placement: placement, migrationLevel: level, createdAt: createdAt)
    }

    /// How messages name the row: `tenant "acme"` or `spare schema tenant_8f…`.
    var name: String {
        slug.map { "tenant \"\($0)\"" } ?? "spare schema \(schema)"
    }

    /// Whether `other` is the same row, with times equal to the millisecond (the stores keep
    /// times at different precisions).
    func matches(_ other: TenantRecord) -> Bool {
        var (left, right) = (self, other)
        for record in [\TenantRecord.createdAt, \TenantRecord.updatedAt] {
            guard abs(left[keyPath: record].timeIntervalSince(right[keyPath: record])) < 0.001 else { return false }
            right[keyPath: record] = left[keyPath: record]
        }
        return left == right
    }

    /// The row after `change`, one generation on.
    func applying(_ change: TenantChange, at now: Date) -> TenantRecord {
        var next = self
        if let state = change.state { next.state = state }
        if let slug = change.slug { next.slug = slug.rawValue }
        if let displayName = change.displayName { next.displayName = displayName }
        if let level = change.level { next.level = level }
        if let lastError = change.lastError { next.lastError = lastError }
        if let placement = change.placement { next.placement = placement }
        if let move = change.move { next.move = move }
        next.generation += 1
        next.updatedAt = now
        return next
    }
}

/// One conditional change of a registry row: written only if the row is still at the
/// generation it was read at, together with its event, in one transaction.
struct TenantChange: Sendable {
    var state: TenantState?
    /// A new slug (a rename); the old one is released.
    var slug: TenantSlug?
    var displayName: String??
    var level: MigrationLevel?
    /// `.some(nil)` clears the last error.
    var lastError: String??
    /// The placement the tenant's schema now lives on (a finished move).
    var placement: String?
    /// `.some(nil)` clears the move.
    var move: TenantMove??
    var event: TenantEvent.Kind
    var detail: String?

    init(state: TenantState? = nil, slug: TenantSlug? = nil, displayName: String?? = nil, level: MigrationLevel? = nil,
         lastError: String?? = nil, placement: String? = nil, move: TenantMove?? = nil, event: TenantEvent.Kind, detail: String? = nil) {
        self.state = state
        self.slug = slug
        self.displayName = displayName
        self.level = level
        self.lastError = lastError
        self.placement = placement
        self.move = move
        self.event = event
        self.detail = detail
    }
}

/// A move in progress: where the tenant goes, how, and the state it returns to.
struct TenantMove: Sendable, Hashable {
    var target: String
    var returnState: TenantState
    var mode: MoveMode

    /// The move stored in a row's `move_target`, `move_return_state` and `move_mode`.
    init?(target: String?, returnState: String?, mode: String?) {
        guard let target, let returnState = returnState.flatMap(TenantState.init(rawValue:)), let mode = mode.flatMap(MoveMode.init(rawValue:)) else { return nil }
        self.init(target: target, returnState: returnState, mode: mode)
    }

    init(target: String, returnState: TenantState, mode: MoveMode) {
        self.target = target
        self.returnState = returnState
        self.mode = mode
    }
}
