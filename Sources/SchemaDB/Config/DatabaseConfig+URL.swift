import Foundation

extension DatabaseConfig {
    /// Parses a `postgres://` or `postgresql://` URL:
    /// `postgres://user:password@host:port/database?sslmode=require&application_name=app&connect_timeout=5`.
    ///
    /// User, password, host and database are percent-decoded; a password with `/`, `?`, `#` or
    /// `@` must encode them (`%2F`, `%3F`, `%23`, `%40`). A host that decodes to a path starting
    /// with `/` is a Unix socket directory. Query parameters, as libpq names them: `sslmode`,
    /// `sslrootcert`, `application_name`, `connect_timeout` (seconds), `host` (a socket
    /// directory), `port`, `user`, `password` and `dbname`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration`` naming
    ///   the problem. The message never repeats the URL or any part of it that could hold the
    ///   password; decoded fields with NUL or other control characters are refused.
    public init(url: String) throws {
        self.init()
        func fail(_ problem: String) -> SchemaDBError {
            .invalidConfiguration("invalid database URL: \(problem)")
        }

        guard let schemeEnd = url.range(of: "://") else {
            throw fail("expected postgres://user:password@host:port/database")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw fail("the scheme must be postgres:// or postgresql://")
        }
        var rest = Substring(url[schemeEnd.upperBound...])
        if let hash = rest.firstIndex(of: "#") {
            // A fragment is ignored; an `@` after a `#` means a password held an unencoded `#`.
            if rest[hash...].contains("@") { throw Self.unencodedPasswordCharacter(fail) }
            rest = rest[..<hash]
        }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        // An `@` after the host part means the password held an unencoded `/` or `?`: the
        // rest of the URL would be read as a database name or parameters carrying it.
        if rest[authorityEnd...].contains("@") { throw Self.unencodedPasswordCharacter(fail) }
        let authority = rest[..<authorityEnd]
        var path: Substring = ""
        var queryString: Substring? = nil
        var afterAuthority = rest[authorityEnd...]
        if let question = afterAuthority.firstIndex(of: "?") {
            queryString = afterAuthority[afterAuthority.index(after: question)...]
            afterAuthority = afterAuthority[..<question]
        }
        if afterAuthority.hasPrefix("/") { path = afterAuthority.dropFirst() }
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            let userPart: Substring
            if let colon = userInfo.firstIndex(of: ":") {
                userPart = userInfo[..<colon]
                self.password = try Self.decode(userInfo[userInfo.index(after: colon)...], "the password", fail)
            } else {
                userPart = userInfo
            }
            let user = try Self.decode(userPart, "the user name", fail)
            if !user.isEmpty { self.user = user }
        }
        try parseHostPort(hostPort, fail: fail)
        if !path.isEmpty { self.database = try Self.decode(path, "the database name", fail) }
        if let queryString {
            for pair in queryString.split(separator: "&") where !pair.isEmpty {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(parts[0])
                let value = try Self.decode(Substring((parts.count > 1 ? parts[1] : "").replacingOccurrences(of: "+", with: " ")), "a parameter value", fail)
                try apply(parameter: key, value: value, fail: fail)
            }
        }
        try validate()
    }

    private static func unencodedPasswordCharacter(_ fail: (String) -> SchemaDBError) -> SchemaDBError {
        fail("an @ follows the host part, so the password holds an unencoded /, ?, # or @; percent-encode them (%2F, %3F, %23, %40)")
    }

    /// Percent-decodes a field, refusing NUL and other control characters: a decoded `%00`
    /// would end the field in the startup message and let the rest set other parameters.
    private static func decode(_ text: Substring, _ field: String, _ fail: (String) -> SchemaDBError) throws -> String {
        guard let decoded = String(text).removingPercentEncoding else { throw fail("\(field) is not valid percent-encoding") }
        if decoded.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw fail("\(field) contains a NUL or another control character; remove it")
        }
        return decoded
    }

    private mutating func parseHostPort(_ hostPort: Substring, fail: (String) -> SchemaDBError) throws {
        guard !hostPort.isEmpty else { return }
        var hostPart = hostPort
        var portPart: Substring? = nil
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw fail("the IPv6 address is not closed with ]") }
            hostPart = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty { throw fail("unexpected text after the IPv6 address") }
        } else if let colon = hostPort.lastIndex(of: ":") {
            hostPart = hostPort[..<colon]
            portPart = hostPort[hostPort.index(after: colon)...]
        }
        if let portPart {
            guard let port = Int(portPart), (1...65535).contains(port) else { throw fail("the port is not a number from 1 to 65535") }
            self.port = port
        }
        let host = try Self.decode(hostPart, "the host", fail)
        if host.hasPrefix("/") {
            unixSocketPath = Self.socketPath(directory: host, port: port)
        } else if !host.isEmpty {
            self.host = host
        }
    }

    private mutating func apply(parameter key: String, value: String, fail: (String) -> SchemaDBError) throws {
        switch key {
        case "sslmode":
            guard let mode = TLSMode(rawValue: value) else {
                throw fail("sslmode must be one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            tlsMode = mode
        case "sslrootcert":
            rootCertificatePath = value
        case "application_name":
            applicationName = value
        case "connect_timeout":
            guard let seconds = Int(value), seconds > 0 else { throw fail("connect_timeout must be a positive number of seconds") }
            connectTimeout = .seconds(seconds)
        case "host":
            if value.hasPrefix("/") { unixSocketPath = Self.socketPath(directory: value, port: port) } else { host = value }
        case "port":
            guard let number = Int(value), (1...65535).contains(number) else { throw fail("the port is not a number from 1 to 65535") }
            port = number
            if let socket = unixSocketPath { unixSocketPath = Self.socketPath(directory: (socket as NSString).deletingLastPathComponent, port: number) }
        case "user":
            user = value
        case "password":
            password = value
        case "dbname":
            database = value
        default:
            // The key is shown only when it is a parameter libpq knows: any other text could be
            // part of a password.
            let shown = Self.otherLibpqParameters.contains(key) ? "parameter \"\(key)\" is not supported" : "it has an unknown parameter (not shown)"
            throw fail("\(shown); supported: sslmode, sslrootcert, application_name, connect_timeout, host, port, user, password, dbname")
        }
    }

    /// libpq parameters that are not supported, named in errors.
    private static let otherLibpqParameters: Set<String> = [
        "hostaddr", "passfile", "channel_binding", "options", "fallback_application_name", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslcompression", "sslcert",
        "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "krbsrvname", "gsslib", "service", "target_session_attrs", "load_balance_hosts", "client_encoding", "require_auth",
    ]

    /// libpq's socket file name inside a socket directory.
    static func socketPath(directory: String, port: Int) -> String {
        directory.hasSuffix(".s.PGSQL.\(port)") ? directory : (directory.hasSuffix("/") ? directory : directory + "/") + ".s.PGSQL.\(port)"
    }

    /// The configuration as a connection URL.
    /// - Parameter maskingPassword: Replace the password with `***`. Defaults to `true`.
    public func url(maskingPassword: Bool = true) -> String {
        let userInfoAllowed = CharacterSet.urlUserAllowed.subtracting(CharacterSet(charactersIn: ":@/?#"))
        var result = "postgres://" + (user.addingPercentEncoding(withAllowedCharacters: userInfoAllowed) ?? user)
        if let password {
            result += ":" + (maskingPassword ? "***" : (password.addingPercentEncoding(withAllowedCharacters: userInfoAllowed) ?? password))
        }
        result += "@"
        if let unixSocketPath {
            result += unixSocketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? unixSocketPath
        } else {
            result += host.contains(":") ? "[\(host)]" : host
            result += ":\(port)"
        }
        result += "/" + (effectiveDatabase.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? effectiveDatabase)
        var query = ["sslmode=\(tlsMode.rawValue)"]
        if let applicationName { query.append("application_name=\(applicationName.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")") }
        return result + "?" + query.joined(separator: "&")
    }
}
