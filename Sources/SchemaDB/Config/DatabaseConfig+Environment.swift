public import Foundation

extension DatabaseConfig {
    /// Reads `DATABASE_URL` when it is set, and otherwise libpq's variables: `PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME` and
    /// `PGCONNECT_TIMEOUT`. Unset variables keep their defaults. A URL without a password takes
    /// it from `PGPASSWORD` or the password file (see ``fillingPassword(from:)``).
    /// - Parameter environment: The variables to read. Defaults to the process environment.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration`` naming
    ///   the variable that cannot be used.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseConfig {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            return try DatabaseConfig(url: url).fillingPassword(from: environment)
        }
        var config = DatabaseConfig()
        if let host = environment["PGHOST"], !host.isEmpty {
            if host.hasPrefix("/") { config.unixSocketPath = host } else { config.host = host }
        }
        if let port = environment["PGPORT"], !port.isEmpty {
            guard let value = Int(port), (1...65535).contains(value) else {
                throw SchemaDBError.invalidConfiguration("PGPORT \"\(port)\" is not a port number from 1 to 65535")
            }
            config.port = value
        }
        if let path = config.unixSocketPath { config.unixSocketPath = socketPath(directory: path, port: config.port) }
        if let user = environment["PGUSER"], !user.isEmpty { config.user = user }
        if let database = environment["PGDATABASE"], !database.isEmpty { config.database = database }
        if let mode = environment["PGSSLMODE"], !mode.isEmpty {
            guard let tlsMode = TLSMode(rawValue: mode) else {
                throw SchemaDBError.invalidConfiguration("PGSSLMODE \"\(mode)\" is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            config.tlsMode = tlsMode
        }
        if let root = environment["PGSSLROOTCERT"], !root.isEmpty { config.rootCertificatePath = root }
        if let name = environment["PGAPPNAME"], !name.isEmpty { config.applicationName = name }
        if let timeout = environment["PGCONNECT_TIMEOUT"], !timeout.isEmpty {
            guard let seconds = Int(timeout), seconds > 0 else {
                throw SchemaDBError.invalidConfiguration("PGCONNECT_TIMEOUT \"\(timeout)\" is not a positive number of seconds")
            }
            config.connectTimeout = .seconds(seconds)
        }
        config = try config.fillingPassword(from: environment)
        try config.validate()
        return config
    }
}
