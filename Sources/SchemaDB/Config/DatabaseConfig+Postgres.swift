import NIOCore
import NIOSSL
public import PostgresNIO

extension DatabaseConfig {
    func makeTLSConfiguration() throws -> TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch tlsMode {
        case .disable:
            return nil
        case .allow, .prefer, .require:
            tls.certificateVerification = .none
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
        case .verifyFull:
            tls.certificateVerification = .fullVerification
        }
        if let rootCertificatePath, tlsMode == .verifyCA || tlsMode == .verifyFull {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificatePath))
            } catch {
                throw SchemaDBError.invalidConfiguration("cannot read the root certificates in \(rootCertificatePath): \(error)")
            }
        }
        return tls
    }

    /// The configuration of a postgres-nio `PostgresClient` with these settings, for an
    /// application that creates its own client and shares it with `DatabasePool(borrowing:)`.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/invalidConfiguration``.
    public func makePostgresClientConfiguration() throws -> PostgresClient.Configuration {
        try validate()
        let tls: PostgresClient.Configuration.TLS
        switch (tlsMode, try makeTLSConfiguration()) {
        case (_, nil): tls = .disable
        case (.allow, let config?), (.prefer, let config?): tls = .prefer(config)
        case (_, let config?): tls = .require(config)
        }
        var configuration: PostgresClient.Configuration
        if let unixSocketPath {
            configuration = .init(unixSocketPath: unixSocketPath, username: user, password: password, database: effectiveDatabase)
        } else {
            configuration = .init(host: host, port: port, username: user, password: password, database: effectiveDatabase, tls: tls)
        }
        configuration.options.connectTimeout = connectTimeout
        configuration.options.minimumConnections = minimumConnections
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectionIdleTimeout = connectionIdleTimeout
        configuration.options.additionalStartupParameters = startupParameters
        return configuration
    }

    /// The configuration of one standalone connection, for the preflight check.
    func makeConnectionConfiguration() throws -> PostgresConnection.Configuration {
        try validate()
        var configuration: PostgresConnection.Configuration
        if let unixSocketPath {
            configuration = .init(unixSocketPath: unixSocketPath, username: user, password: password, database: effectiveDatabase)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            if let tlsConfiguration = try makeTLSConfiguration() {
                let context = try NIOSSLContext(configuration: tlsConfiguration)
                tls = (tlsMode == .allow || tlsMode == .prefer) ? .prefer(context) : .require(context)
            } else {
                tls = .disable
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: effectiveDatabase, tls: tls)
        }
        configuration.options.connectTimeout = .nanoseconds(connectTimeout.wholeNanoseconds)
        configuration.options.additionalStartupParameters = startupParameters
        return configuration
    }

    /// Where the server is, for messages: `host:port` or the socket path.
    package var endpointDescription: String { unixSocketPath ?? (host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)") }
}
