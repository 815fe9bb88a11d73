import Logging
import NIOCore
import NIOPosix
import PostgresNIO

extension DatabasePool {
    /// Checks that the server can be reached and accepts the login, and fails fast with the
    /// cause when it does not.
    ///
    /// The pool alone would report an unreachable server only after about a minute and without a
    /// cause. For an owned pool this opens one standalone connection, retrying with backoff as
    /// ``DatabaseConfig/retry`` says while the server refuses connections; a wrong password or
    /// database fails at once. For a borrowed pool it runs `SELECT 1` within `timeout`.
    /// - Parameter timeout: The deadline for a borrowed pool. Defaults to 10 s.
    /// - Throws: ``SchemaDBError`` with code ``SchemaDBError/Code/connectionFailed``.
    public func checkConnection(timeout: Duration = .seconds(10)) async throws {
        guard let configuration else {
            try await checkBorrowedConnection(timeout: timeout)
            return
        }
        let connectionConfiguration = try configuration.makeConnectionConfiguration()
        var delay = configuration.retry.initialDelay
        var attempt = 1
        while true {
            do {
                let connection = try await PostgresConnection.connect(configuration: connectionConfiguration, id: 0, logger: logger)
                try? await connection.close()
                return
            } catch {
                let failure = Self.connectionError(error, configuration: configuration)
                let retryable = failure.sqlState == nil || failure.sqlState == "57P03"  // refused, unreachable, or starting up
                guard retryable, attempt <= configuration.retry.attempts, !Task.isCancelled else { throw failure }
                logger.debug("database not reachable yet; retrying", metadata: [
                    LoggingKeys.endpoint: "\(configuration.endpointDescription)",
                    LoggingKeys.attempt: "\(attempt)",
                    LoggingKeys.error: "\(failure)",
                ])
                try await Task.sleep(for: delay)
                delay = min(delay * configuration.retry.backoffMultiplier, configuration.retry.maximumDelay)
                attempt += 1
            }
        }
    }

    private func checkBorrowedConnection(timeout: Duration) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try await self.client.query("SELECT 1", logger: self.logger).collect()
                return true
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return false
            }
            defer { group.cancelAll() }
            do {
                guard try await group.next() == true else {
                    throw SchemaDBError(code: .connectionFailed, message: "the application's PostgresClient did not answer within \(timeout); check that its run() is running and the server is reachable")
                }
            } catch let error as SchemaDBError {
                throw error
            } catch {
                throw SchemaDBError.wrapping(error, sql: "SELECT 1", schema: nil)
            }
        }
    }

    /// A one-line error that names the endpoint, the cause and what to check.
    static func connectionError(_ error: any Error, configuration: DatabaseConfig) -> SchemaDBError {
        let endpoint = configuration.endpointDescription
        guard let psqlError = error as? PSQLError else {
            return SchemaDBError(code: .connectionFailed, message: "cannot connect to PostgreSQL at \(endpoint): \(error)")
        }
        if let state = psqlError.serverInfo?[.sqlState] {
            let serverMessage = psqlError.serverInfo?[.message] ?? "no message"
            let advice: String
            switch state {
            case "28P01": advice = "check the user name and password"
            case "28000": advice = "the server's pg_hba.conf does not admit this user, host or database"
            case "3D000": advice = "create the database or fix the database name"
            case "57P03": advice = "the server is starting up or shutting down; try again shortly"
            default: advice = "check the connection settings"
            }
            var result = SchemaDBError(
                code: .connectionFailed,
                message: "PostgreSQL at \(endpoint) refused the connection for user \"\(configuration.user)\" to database \"\(configuration.effectiveDatabase)\": \(serverMessage); \(advice)",
                underlying: psqlError)
            result.sqlState = state
            return result
        }
        if psqlError.code == .sslUnsupported {
            return SchemaDBError(
                code: .connectionFailed,
                message: "PostgreSQL at \(endpoint) does not support TLS but sslmode is \(configuration.tlsMode.rawValue); enable TLS on the server or use sslmode=prefer",
                underlying: psqlError)
        }
        let cause = psqlError.underlying.map { describeNetworkError($0) } ?? "\(psqlError.code)"
        return SchemaDBError(
            code: .connectionFailed,
            message: "cannot connect to PostgreSQL at \(endpoint): \(cause); check the host and port and that the server is running",
            underlying: psqlError)
    }

    /// Whether a failed connection attempt says the server will not serve this pool: nothing
    /// listens at the port, the host name is unknown, the server is starting up or shutting
    /// down, or it turns the login away (wrong password, not admitted by pg_hba.conf, no such
    /// database). A timeout, a full server or a connection closed during start-up is not.
    static func isRefusal(_ error: any Error) -> Bool {
        guard let psqlError = error as? PSQLError else { return false }
        if let state = psqlError.serverInfo?[.sqlState] { return ["57P01", "57P02", "57P03", "28P01", "28000", "3D000"].contains(state) }
        guard psqlError.code == .connectionError, let underlying = psqlError.underlying else { return false }
        return ["connection refused", "the host name could not be resolved"].contains(describeNetworkError(underlying))
    }

    private static func describeNetworkError(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("refused") || text.contains("ECONNREFUSED") { return "connection refused" }
        if text.contains("connectTimeout") || text.contains("timed out") { return "connection timed out" }
        if text.contains("unknown host") || text.contains("Name or service not known") || text.contains("NXDOMAIN") || text.contains("ResolverError") {
            return "the host name could not be resolved"
        }
        return text.replacingNewlines()
    }
}
