import InMemoryLogging
import Logging
import PostgresNIO
import SchemaDB
import SchemaDBTesting
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@Suite(integration, .timeLimit(.minutes(2)))
struct DatabasePoolTests {
    @Test func concurrencyIsCappedByWhatTheServerCanTake() async throws {
        try await withTestSchema { pool, db in
            let maximum = try #require(try await db.fetchValue("SELECT current_setting('max_connections')::int", as: Int.self))
            let allowed = await pool.concurrencyTheServerAllows(100_000)
            #expect(allowed >= 1 && allowed < maximum)
            #expect(await pool.concurrencyTheServerAllows(2) == 2)
        }
    }

    @Test func anUnreachablePortFailsFastWithTheCause() async throws {
        var config = try TestPostgres.makeTestConfiguration()
        config.host = "127.0.0.1"
        config.port = 1
        let start = ContinuousClock.now
        await #expect {
            try await TestPostgres.withPool(configuration: config) { _ in }
        } throws: { error in
            let error = error as? SchemaDBError
            return error?.code == .connectionFailed && error?.message.contains("127.0.0.1:1") == true
                && error?.message.contains("connection refused") == true
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func theFirstConnectionIsRetriedWithBackoffBeforeFailing() async throws {
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "t", factory: { _ in logs })
        logger.logLevel = .debug
        var config = try TestPostgres.makeTestConfiguration()
        config.host = "127.0.0.1"
        config.port = 1
        config.retry.attempts = 2
        config.retry.initialDelay = .milliseconds(100)
        let start = ContinuousClock.now
        await #expect(throws: SchemaDBError.self) {
            try await TestPostgres.withPool(configuration: config, logger: logger) { _ in }
        }
        #expect(ContinuousClock.now - start >= .milliseconds(300))
        let retries = logs.entries.filter { $0.message.description.contains("retrying") }
        #expect(retries.map { $0.metadata[LoggingKeys.attempt]?.description } == ["1", "2"])
    }

    @Test func requiringTLSFromAServerWithoutItIsAClearError() async throws {
        var config = try TestPostgres.makeTestConfiguration()
        config.tlsMode = .require
        await #expect {
            try await TestPostgres.withPool(configuration: config) { _ in }
        } throws: { error in
            let error = error as? SchemaDBError
            return error?.code == .connectionFailed && error?.message.contains("does not support TLS") == true
        }
    }

    @Test func anUnknownDatabaseIsNamedInTheError() async throws {
        var config = try TestPostgres.makeTestConfiguration()
        config.database = "no_such_database_here"
        config.password = "hunter2"
        await #expect {
            try await TestPostgres.withPool(configuration: config) { _ in }
        } throws: { error in
            let error = error as? SchemaDBError
            let text = "\(error.map(String.init(describing:)) ?? "")\(error.map(String.init(reflecting:)) ?? "")"
            return error?.sqlState == "3D000" && text.contains("no_such_database_here") && !text.contains("hunter2")
        }
    }

    @Test func anUnresolvableHostIsAClearError() async throws {
        var config = try TestPostgres.makeTestConfiguration()
        config.host = "no-such-host.invalid"
        await #expect {
            try await TestPostgres.withPool(configuration: config) { _ in }
        } throws: { error in
            let error = error as? SchemaDBError
            return error?.code == .connectionFailed && error?.message.contains("no-such-host.invalid") == true
        }
    }

    @Test func aTemporaryDatabaseIsUsableAndDroppedAfterwards() async throws {
        try await TestPostgres.withPool { pool in
            let name = try await TestPostgres.withTemporaryDatabase(pool: pool) { config in
                try await TestPostgres.withPool(configuration: config) { inner in
                    try await inner.database(schema: nil).fetchValue("SELECT current_database()", as: String.self)
                }
            }
            #expect(name?.hasPrefix("t_") == true)
            let stillThere = try await pool.database(schema: nil).fetchValue("SELECT count(*) FROM pg_database WHERE datname = $1", name, as: Int.self)
            #expect(stillThere == 0)
        }
    }

    @Test func aBorrowedClientIsUsedButNeverRunOrShutDown() async throws {
        let config = try TestPostgres.makeTestConfiguration()
        let owned = try DatabasePool(configuration: config, logger: Logger(label: "t"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await owned.client.run() }
            let borrowed = DatabasePool(borrowing: owned.client, maximumConnections: 8, logger: Logger(label: "t"))
            #expect(!borrowed.isOwned)
            try await borrowed.checkConnection()
            // The borrowed pool's run() waits for shutdown without touching the client.
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask { await borrowed.run() }
                    trigger.triggerGracefulShutdown()
                    try await inner.waitForAll()
                }
            }
            // The client still serves queries after the borrowed pool stopped.
            #expect(try await borrowed.database(schema: nil).fetchValue("SELECT 41 + 1", as: Int.self) == 42)
            group.cancelAll()
        }
    }

    @Test func anOwnedPoolRunsInAServiceGroupAndStopsOnShutdown() async throws {
        let pool = try DatabasePool(configuration: try TestPostgres.makeTestConfiguration(), logger: Logger(label: "t"))
        try await testGracefulShutdown { trigger in
            let group = ServiceGroup(services: [pool], logger: Logger(label: "t"))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await pool.checkConnection()
                #expect(try await pool.database(schema: nil).fetchValue("SELECT 1", as: Int.self) == 1)
                trigger.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }

    /// A server that answers "starting up" to new connections is gone for now: a lease fails
    /// with that cause in seconds, not at the lease timeout.
    @Test func aLeaseFailsInSecondsWhileTheServerRefusesConnections() async throws {
        let direct = try TestPostgres.makeTestConfiguration()
        let proxy = try await FaultProxy.start(upstreamHost: direct.host, upstreamPort: direct.port)
        var config = direct
        config.host = "127.0.0.1"
        config.port = proxy.port
        config.leaseTimeout = .seconds(30)
        try await TestPostgres.withPool(configuration: config) { pool in
            let db = pool.database(schema: nil)
            let before = try await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }
            #expect(before == 1)
            proxy.cutAllConnections()
            // A statement on a connection the cut closed fails with that close; the next lease
            // needs a new connection and gets the server's refusal.
            let started = ContinuousClock.now
            var refusal: SchemaDBError?
            while refusal == nil, ContinuousClock.now - started < .seconds(15) {
                do {
                    _ = try await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }
                } catch let error as SchemaDBError where error.message.contains("starting up") {
                    refusal = error
                } catch let error as SchemaDBError {
                    #expect(error.code == .connectionFailed)
                }
            }
            #expect(refusal?.code == .connectionFailed)
            #expect(ContinuousClock.now - started < .seconds(15))
            proxy.acceptConnections()
            var served = false
            let reopened = ContinuousClock.now
            while !served, ContinuousClock.now - reopened < .seconds(20) {
                served = (try? await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }) == 1
            }
            #expect(served, "the pool serves again once the server accepts connections")
        }
        try await proxy.close()
    }

    /// A database dropped under a running pool (or a server replaced by one without it) is a
    /// refusal: the next lease fails within seconds, naming the database, instead of waiting
    /// out its timeout.
    @Test func aLeaseFailsInSecondsOnceItsDatabaseIsGone() async throws {
        try await TestPostgres.withPool { admin in
            try await TestPostgres.withTemporaryDatabase(pool: admin) { database in
                var config = database
                config.leaseTimeout = .seconds(30)
                try await TestPostgres.withPool(configuration: config) { pool in
                    let db = pool.database(schema: nil)
                    #expect(try await db.fetchValue("SELECT 1", as: Int.self) == 1)
                    try await admin.database(schema: nil).execute(try SQLTemplate("DROP DATABASE \(SQLIdentifier.quote(database.effectiveDatabase)) WITH (FORCE)"))
                    let started = ContinuousClock.now
                    var gone: SchemaDBError?
                    while gone == nil, ContinuousClock.now - started < .seconds(20) {
                        do {
                            _ = try await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }
                        } catch let error as SchemaDBError where error.sqlState == "3D000" {
                            gone = error
                        } catch let error as SchemaDBError {
                            #expect(error.code == .connectionFailed)
                        }
                    }
                    #expect(gone?.message.contains("create the database or fix the database name") == true, "\(String(describing: gone))")
                    #expect(ContinuousClock.now - started < .seconds(15))
                }
            }
        }
    }

    /// A pool whose connections are all busy is not a server that went away: a lease waits for
    /// its whole timeout, past the server check, and then names both possible causes.
    @Test func aBusyPoolWaitsForTheLeaseTimeoutAndIsNotTakenForAnOutage() async throws {
        var config = try TestPostgres.makeTestConfiguration()
        config.maximumConnections = 1
        config.leaseTimeout = .seconds(3)
        try await TestPostgres.withPool(configuration: config) { pool in
            let db = pool.database(schema: nil)
            // Opens the one connection first, however long that takes on a loaded machine.
            _ = try await db.fetchValue("SELECT 1", as: Int.self)
            try await db.withConnection { _ in
                let started = ContinuousClock.now
                await #expect {
                    try await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }
                } throws: { error in
                    (error as? SchemaDBError)?.message.contains("no pooled connection within") == true
                }
                #expect(ContinuousClock.now - started >= .seconds(3))
            }
            let after = try await db.withConnection { try await $0.fetchValue("SELECT 1", as: Int.self) }
            #expect(after == 1)
        }
    }
}
