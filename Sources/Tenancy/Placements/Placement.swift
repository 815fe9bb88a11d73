public import Foundation

/// A PostgreSQL database that holds tenant schemas.
///
/// The placement named ``defaultName`` is the database ``Tenancy`` was built with. Others are
/// added with ``Tenancy/addPlacement(_:database:weight:)``: the registry records each one's
/// connection URL without its password, and the identity of the database behind it (server
/// system identifier and database name), and every process refuses to use a placement whose
/// URL now leads to another database.
public struct Placement: Sendable, Hashable, Codable {
    /// Whether new tenants may be placed here.
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// New tenants and spares may go here.
        case open
        /// New tenants and spares go elsewhere; the tenants here are served as before.
        case draining
    }

    /// The name of the database ``Tenancy`` was built with.
    public static let defaultName = "default"

    /// The placement's name: 1 to 40 lowercase letters, digits and '-', starting with a letter.
    public var name: String
    /// How to connect, without a password; `nil` for the default placement, which is the
    /// database ``Tenancy`` was built with. A process supplies the password from its own
    /// configuration (``Tenancy/Configuration/placementDatabases``), the
    /// `TENANCY_PLACEMENT_<NAME>_URL` variable for `tenantctl`, or `~/.pgpass`.
    public var url: String?
    /// The server's system identifier recorded when the placement was added.
    public var systemIdentifier: String?
    /// The database name recorded when the placement was added.
    public var databaseName: String?
    /// Its share of new tenants: a placement of weight 2 is given twice the tenants of one of
    /// weight 1. At least 1.
    public var weight: Int
    /// Whether new tenants may go here.
    public var state: State
    /// When it was added.
    public var createdAt: Date

    /// The database recorded for the placement, once known.
    public var identity: DatabaseIdentity? {
        guard let systemIdentifier, let databaseName else { return nil }
        return DatabaseIdentity(systemIdentifier: systemIdentifier, databaseName: databaseName)
    }

    /// Why `name` cannot name a placement, or `nil` when it can.
    public static func problem(withName name: String) -> String? {
        guard (1...40).contains(name.utf8.count) else { return "it must be 1 to 40 characters long" }
        guard let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return "it must start with a lowercase letter" }
        let allowed = name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-")
        }
        return allowed ? nil : "it may hold only lowercase letters, digits and '-'"
    }

    /// Checks a placement name.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidArgument``.
    static func validate(name: String) throws {
        if let problem = problem(withName: name) {
            throw TenancyError(code: .invalidArgument, message: "invalid placement name \"\(name.debugDescriptionEscaped)\": \(problem); use a name like eu-2")
        }
    }

    /// The environment variable that gives `tenantctl` this placement's URL with its password:
    /// `TENANCY_PLACEMENT_EU_2_URL` for `eu-2`.
    public static func environmentVariable(forName name: String) -> String {
        "TENANCY_PLACEMENT_" + name.uppercased().replacingOccurrences(of: "-", with: "_") + "_URL"
    }
}

/// How many tenants and spares a placement holds, from the registry.
public struct PlacementCounts: Sendable, Hashable, Codable {
    /// Rows by state (spares as ``TenantState/spare``); deleted tenants are left out.
    public var byState: [TenantState: Int]

    /// Tenants that hold a schema or are getting one: what the placement policy balances.
    public var tenants: Int {
        byState.filter { $0.key != .spare && $0.key != .deleted && $0.key != .failed }.values.reduce(0, +)
    }

    /// Unclaimed spare schemas.
    public var spares: Int { byState[.spare] ?? 0 }
}
