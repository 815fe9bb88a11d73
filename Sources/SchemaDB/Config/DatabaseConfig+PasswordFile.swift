public import Foundation

extension DatabaseConfig {
    /// This configuration with a missing password filled in the way libpq does it, so that a
    /// password never has to be on a command line: `PGPASSWORD`, then the first matching line
    /// of the password file (`PGPASSFILE`, default `~/.pgpass`).
    ///
    /// A password file line is `host:port:database:user:password`; `*` matches anything, `\:`
    /// and `\\` escape, `#` starts a comment line. A Unix socket matches the host `localhost`.
    /// - Parameter environment: The variables to read. Defaults to the process environment.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration`` when the
    ///   password file is readable by its group or others (libpq ignores such a file; this says so).
    public func fillingPassword(from environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseConfig {
        guard password == nil else { return self }
        var config = self
        if let password = environment["PGPASSWORD"] {
            config.password = password
            return config
        }
        let path: String
        if let file = environment["PGPASSFILE"], !file.isEmpty {
            path = file
        } else if let home = environment["HOME"], !home.isEmpty {
            path = home + "/.pgpass"
        } else {
            return config
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return config }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw SchemaDBError.invalidConfiguration("the password file \(path) can be read by its group or others; make it private with chmod 600 \(path)")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return config }
        let host = unixSocketPath == nil ? self.host : "localhost"
        let wanted = [host, String(port), effectiveDatabase, user]
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            let fields = Self.passwordFileFields(line)
            guard fields.count == 5 else { continue }
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) {
                config.password = fields[4]
                break
            }
        }
        return config
    }

    /// The colon-separated fields of a password file line, with `\:` and `\\` unescaped.
    static func passwordFileFields(_ line: Substring) -> [String] {
        var fields: [String] = []
        var field = ""
        var escaped = false
        for character in line {
            if escaped {
                field.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == ":" && fields.count < 4 {
                fields.append(field)
                field = ""
            } else {
                field.append(character)
            }
        }
        fields.append(field)
        return fields
    }
}
