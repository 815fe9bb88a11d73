/// Keys for PostgreSQL advisory locks, derived from names.
public enum AdvisoryLockKey {
    /// A stable 64-bit key (FNV-1a) for `parts`, joined with NUL bytes so that
    /// `("ab", "c")` and `("a", "bc")` differ. Pass it as a `bigint` to `pg_advisory_lock` and
    /// its relatives.
    public static func make(_ parts: String...) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for (index, part) in parts.enumerated() {
            if index > 0 { hash = (hash ^ 0) &* 0x0000_0100_0000_01b3 }
            for byte in part.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        return Int64(bitPattern: hash)
    }
}
