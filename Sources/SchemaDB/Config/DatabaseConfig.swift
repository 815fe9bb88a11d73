/// Where and how to connect to PostgreSQL, and how the shared pool behaves.
///
/// Build one from a URL (``init(url:)``), from the environment (``fromEnvironment(_:)``) or
/// field by field. Every field has a default. ``description`` masks the password.
public struct DatabaseConfig: Sendable, Equatable {
    /// How the connection uses TLS, as libpq's `sslmode`.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Never use TLS.
        case disable
        /// Use TLS when the server offers it, without verifying the certificate.
        case allow
        /// Use TLS when the server offers it, without verifying the certificate. The default.
        case prefer
        /// Require TLS, without verifying the certificate.
        case require
        /// Require TLS and a certificate signed by a trusted authority.
        case verifyCA = "verify-ca"
        /// Require TLS, a trusted certificate and a matching host name.
        case verifyFull = "verify-full"
    }

    /// Retries of the first connection, for servers that are still starting.
    public struct Retry: Sendable, Equatable {
        /// Attempts after the first one. Defaults to `3`.
        public var attempts: Int = 3
        /// The wait before the first retry. Defaults to 500 ms.
        public var initialDelay: Duration = .milliseconds(500)
        /// The factor each wait grows by. Defaults to `2`.
        public var backoffMultiplier: Double = 2
        /// The longest wait between two attempts. Defaults to 10 s.
        public var maximumDelay: Duration = .seconds(10)

        public init() {}

        /// No retries: the first failure is reported at once.
        public static var none: Retry {
            var retry = Retry()
            retry.attempts = 0
            return retry
        }
    }

    /// The server's host name or IP address. Defaults to `localhost`.
    public var host: String = "localhost"
    /// The server's port. Defaults to `5432`.
    public var port: Int = 5432
    /// A Unix domain socket to connect through instead of ``host`` and ``port``.
    public var unixSocketPath: String? = nil
    /// The role to log in as. Defaults to `postgres`.
    public var user: String = "postgres"
    /// The role's password. Never shown by ``description`` or in errors.
    public var password: String? = nil
    /// The database to connect to. Defaults to the role's name, as with libpq.
    public var database: String? = nil
    /// TLS use and verification. Defaults to ``TLSMode/prefer``.
    public var tlsMode: TLSMode = .prefer
    /// A PEM file of trusted root certificates for ``TLSMode/verifyCA`` and ``TLSMode/verifyFull``.
    public var rootCertificatePath: String? = nil
    /// Sent to the server as `application_name`, shown in `pg_stat_activity`.
    public var applicationName: String? = nil
    /// The longest wait for one connection to be established. Defaults to 10 s.
    public var connectTimeout: Duration = .seconds(10)
    /// Connections kept open even when idle. Defaults to `0`.
    public var minimumConnections: Int = 0
    /// The most connections the pool opens. Defaults to `20`.
    public var maximumConnections: Int = 20
    /// How long an idle connection above ``minimumConnections`` stays open. Defaults to 60 s.
    public var connectionIdleTimeout: Duration = .seconds(60)
    /// `statement_timeout` for every session of the pool, so that no query waits on the server
    /// without bound; `nil` keeps the server's setting. Defaults to 60 s. Migrations are not
    /// bounded by it: their transactions set no statement timeout, only a lock timeout.
    public var statementTimeout: Duration? = .seconds(60)
    /// `lock_timeout` for every session of the pool; `nil` keeps the server's setting.
    public var lockTimeout: Duration? = nil
    /// `idle_in_transaction_session_timeout` for every session, so that a client that stopped
    /// half-way through a transaction does not hold its locks for ever; `nil` keeps the
    /// server's setting. Defaults to 60 s.
    public var idleInTransactionSessionTimeout: Duration? = .seconds(60)
    /// The longest wait for a pooled connection in transactions and scoped connections; a
    /// server that refuses connections fails a waiting lease after about a second. Defaults to 30 s.
    public var leaseTimeout: Duration = .seconds(30)
    /// Queries slower than this are logged at `info` level; `nil` logs none.
    public var slowQueryThreshold: Duration? = nil
    /// Retries of the first connection. Defaults to three, with backoff.
    public var retry: Retry = .init()

    /// A configuration with every default: `postgres@localhost:5432`.
    public init() {}

    /// The database name sent to the server.
    public var effectiveDatabase: String { database ?? user }

    /// The session settings sent in the startup message of every connection.
    var startupParameters: [(String, String)] {
        var parameters: [(String, String)] = []
        if let applicationName { parameters.append(("application_name", applicationName)) }
        if let statementTimeout { parameters.append(("statement_timeout", Self.milliseconds(statementTimeout))) }
        if let lockTimeout { parameters.append(("lock_timeout", Self.milliseconds(lockTimeout))) }
        if let idleInTransactionSessionTimeout {
            parameters.append(("idle_in_transaction_session_timeout", Self.milliseconds(idleInTransactionSessionTimeout)))
        }
        return parameters
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(duration.wholeMilliseconds)
    }

    /// Checks the settings that cannot work.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration``.
    public func validate() throws {
        if unixSocketPath == nil && host.isEmpty { throw SchemaDBError.invalidConfiguration("the database host is empty; set a host name or IP address") }
        if !(1...65535).contains(port) { throw SchemaDBError.invalidConfiguration("the database port \(port) is out of range; use 1 to 65535") }
        if user.isEmpty { throw SchemaDBError.invalidConfiguration("the database user is empty; set a role name") }
        if maximumConnections < 1 { throw SchemaDBError.invalidConfiguration("maximumConnections is \(maximumConnections); it must be at least 1") }
        if minimumConnections < 0 || minimumConnections > maximumConnections {
            throw SchemaDBError.invalidConfiguration("minimumConnections is \(minimumConnections); it must be between 0 and maximumConnections (\(maximumConnections))")
        }
        if retry.attempts < 0 { throw SchemaDBError.invalidConfiguration("retry.attempts is \(retry.attempts); it must be 0 or more") }
    }
}

extension DatabaseConfig: CustomStringConvertible {
    /// The configuration as a URL with the password masked.
    public var description: String { url(maskingPassword: true) }
}
