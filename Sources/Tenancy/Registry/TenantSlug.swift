/// A tenant's public name: 2 to 50 lowercase ASCII letters, digits and `-`, starting with a
/// letter and not ending with `-`. Reserved names (`public`, `postgres`, names starting with
/// `pg-`, …) are refused. Slugs never reach SQL: schema names are chosen by the provisioner.
public struct TenantSlug: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The slug.
    public let rawValue: String

    /// Names no tenant may take.
    public static let reserved: Set<String> = [
        "public", "postgres", "template0", "template1", "information-schema", "pg", "default", "admin", "root",
        "system", "tenancy", "schema", "spare",
    ]

    /// Validates `rawValue`.
    /// - Throws: ``TenancyError`` with code ``TenancyError/Code/invalidSlug`` naming the problem.
    public init(_ rawValue: String) throws {
        if let problem = Self.problem(with: rawValue) {
            throw TenancyError.invalidSlug(rawValue, problem)
        }
        self.rawValue = rawValue
    }

    /// Returns `nil` for a valid slug, or a sentence naming what is wrong.
    public static func problem(with slug: String) -> String? {
        let bytes = Array(slug.utf8)
        guard bytes.count >= 2 else { return "it is shorter than 2 characters" }
        guard bytes.count <= 50 else { return "it is longer than 50 characters" }
        guard let first = bytes.first, first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z") else {
            return "it must start with a lowercase letter"
        }
        for byte in bytes {
            let allowed = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
            if !allowed { return "only lowercase letters, digits and '-' are allowed" }
        }
        if bytes.last == UInt8(ascii: "-") { return "it must not end with '-'" }
        if reserved.contains(slug) || slug.hasPrefix("pg-") { return "it is reserved" }
        return nil
    }

    /// A slug read back from the registry, which only ever stores validated slugs.
    init(registryValue: String) {
        self.rawValue = registryValue
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
