import Foundation

extension DatabaseConfig {
    /// Parses a `postgres://` or `postgresql://` URL:
    /// `postgres://user:password@host:port/database?sslmode=require&application_name=app&connect_timeout=5`.
    ///
    /// User, password, host and database are percent-decoded. A host that decodes to a path
    /// starting with `/` is a Unix socket directory. Query parameters: `sslmode`, `sslrootcert`,
    /// `application_name`, `connect_timeout` (seconds), and `host` (a socket directory).
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration``; the
    ///   message never contains the password.
    public init(url: String) throws {
        self.init()
        let masked = Self.maskPassword(inURL: url)
        func fail(_ problem: String) -> SchemaDBError {
            .invalidConfiguration("invalid database URL \(masked): \(problem)")
        }

        guard let schemeEnd = url.range(of: "://") else {
            throw fail("expected postgres://user:password@host:port/database")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw fail("the scheme must be postgres:// or postgresql://, not \(scheme)://")
        }
        var rest = Substring(url[schemeEnd.upperBound...])
        var queryString: Substring? = nil
        if let question = rest.firstIndex(of: "?") {
            queryString = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        var authority = rest
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        }
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            let userPart: Substring
            if let colon = userInfo.firstIndex(of: ":") {
                userPart = userInfo[..<colon]
                guard let password = String(userInfo[userInfo.index(after: colon)...]).removingPercentEncoding else {
                    throw fail("the password is not valid percent-encoding")
                }
                self.password = password
            } else {
                userPart = userInfo
            }
            guard let user = String(userPart).removingPercentEncoding else { throw fail("the user name is not valid percent-encoding") }
            if !user.isEmpty { self.user = user }
        }
        try parseHostPort(hostPort, fail: fail)
        if !path.isEmpty {
            guard let database = String(path).removingPercentEncoding else { throw fail("the database name is not valid percent-encoding") }
            self.database = database
        }
        if let queryString {
            for pair in queryString.split(separator: "&") where !pair.isEmpty {
                let key = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
                let rawValue = pair.split(separator: "=", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
                guard let value = rawValue.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                    throw fail("the value of \(key) is not valid percent-encoding")
                }
                try apply(parameter: key, value: value, fail: fail)
            }
        }
        try validate()
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
            guard let port = Int(portPart), (1...65535).contains(port) else { throw fail("the port \"\(portPart)\" is not a number from 1 to 65535") }
            self.port = port
        }
        guard let host = String(hostPart).removingPercentEncoding else { throw fail("the host is not valid percent-encoding") }
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
                throw fail("sslmode \"\(value)\" is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            tlsMode = mode
        case "sslrootcert":
            rootCertificatePath = value
        case "application_name":
            applicationName = value
        case "connect_timeout":
            guard let seconds = Int(value), seconds > 0 else { throw fail("connect_timeout \"\(value)\" is not a positive number of seconds") }
            connectTimeout = .seconds(seconds)
        case "host":
            if value.hasPrefix("/") { unixSocketPath = Self.socketPath(directory: value, port: port) } else { host = value }
        default:
            throw fail("unknown parameter \"\(key)\"; supported: sslmode, sslrootcert, application_name, connect_timeout, host")
        }
    }

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

    /// Replaces the password of a URL-like string with `***`, for messages about URLs that may not parse.
    static func maskPassword(inURL url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url.contains("@") ? "(unparseable URL)" : url }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return url }
        return String(url[..<authority.index(after: colon)]) + "***" + String(url[at...])
    }
}
