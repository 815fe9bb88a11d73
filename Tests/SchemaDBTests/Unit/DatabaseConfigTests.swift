import SchemaDB
import Testing

@Suite struct DatabaseConfigTests {
    @Test func parsesEveryPartOfAURL() throws {
        let config = try DatabaseConfig(url: "postgresql://app%40corp:p%40ss%3Aw%2Fd@db.example.com:6543/my%20db?sslmode=verify-full&application_name=billing%20api&connect_timeout=7")
        #expect(config.user == "app@corp")
        #expect(config.password == "p@ss:w/d")
        #expect(config.host == "db.example.com")
        #expect(config.port == 6543)
        #expect(config.database == "my db")
        #expect(config.tlsMode == .verifyFull)
        #expect(config.applicationName == "billing api")
        #expect(config.connectTimeout == .seconds(7))
    }

    @Test func fillsDefaultsForAShortURL() throws {
        let config = try DatabaseConfig(url: "postgres://localhost")
        #expect(config.user == "postgres")
        #expect(config.port == 5432)
        #expect(config.effectiveDatabase == "postgres")
        #expect(config.tlsMode == .prefer)
        #expect(config.password == nil)
    }

    @Test func parsesIPv6HostsAndUnixSockets() throws {
        let ipv6 = try DatabaseConfig(url: "postgres://u@[::1]:5433/d")
        #expect(ipv6.host == "::1")
        #expect(ipv6.port == 5433)
        let socket = try DatabaseConfig(url: "postgres://u@%2Fvar%2Frun%2Fpostgresql/d")
        #expect(socket.unixSocketPath == "/var/run/postgresql/.s.PGSQL.5432")
        let socketParameter = try DatabaseConfig(url: "postgres://u@:5999/d?host=/tmp")
        #expect(socketParameter.unixSocketPath == "/tmp/.s.PGSQL.5999")
    }

    @Test(arguments: [
        ("mysql://u:hunter2@h/d", "scheme"),
        ("postgres://u:hunter2@h:99999/d", "port"),
        ("postgres://u:hunter2@h:abc/d", "port"),
        ("postgres://u:hunter2@h/d?sslmode=sometimes", "sslmode"),
        ("postgres://u:hunter2@h/d?connect_timeout=-1", "connect_timeout"),
        ("postgres://u:hunter2@h/d?pool=5", "unknown parameter"),
        ("u:hunter2@h/d", "expected postgres://"),
    ])
    func badURLsAreRefusedWithoutShowingThePassword(url: String, problem: String) {
        #expect {
            _ = try DatabaseConfig(url: url)
        } throws: { error in
            let text = String(describing: error) + String(reflecting: error)
            return (error as? SchemaDBError)?.code == .invalidConfiguration && text.contains(problem) && !text.contains("hunter2")
        }
    }

    @Test func descriptionMasksThePassword() throws {
        let config = try DatabaseConfig(url: "postgres://app:s3cret%21@db:5432/main?sslmode=require")
        #expect(config.description == "postgres://app:***@db:5432/main?sslmode=require")
        #expect(!String(reflecting: config).contains("s3cret"))
        #expect(config.url(maskingPassword: false).contains("s3cret!"))
        #expect(try DatabaseConfig(url: config.url(maskingPassword: false)) == config)
    }

    @Test func readsDatabaseURLBeforeThePGVariables() throws {
        let config = try DatabaseConfig.fromEnvironment(["DATABASE_URL": "postgres://a@h1/d1", "PGHOST": "h2", "PGUSER": "b"])
        #expect(config.host == "h1")
        #expect(config.user == "a")
    }

    @Test func readsThePGVariables() throws {
        let config = try DatabaseConfig.fromEnvironment([
            "PGHOST": "pg.internal", "PGPORT": "6432", "PGUSER": "svc", "PGPASSWORD": "pw", "PGDATABASE": "main",
            "PGSSLMODE": "require", "PGAPPNAME": "worker", "PGCONNECT_TIMEOUT": "3",
        ])
        #expect(config.host == "pg.internal")
        #expect(config.port == 6432)
        #expect(config.user == "svc")
        #expect(config.password == "pw")
        #expect(config.database == "main")
        #expect(config.tlsMode == .require)
        #expect(config.applicationName == "worker")
        #expect(config.connectTimeout == .seconds(3))
    }

    @Test func badPGVariablesNameTheVariable() {
        #expect { _ = try DatabaseConfig.fromEnvironment(["PGPORT": "five"]) } throws: { "\($0)".contains("PGPORT") }
        #expect { _ = try DatabaseConfig.fromEnvironment(["PGSSLMODE": "maybe"]) } throws: { "\($0)".contains("PGSSLMODE") }
    }

    @Test func impossiblePoolSizesAreRefused() {
        var config = DatabaseConfig()
        config.maximumConnections = 0
        #expect(throws: SchemaDBError.self) { try config.validate() }
        config.maximumConnections = 4
        config.minimumConnections = 5
        #expect(throws: SchemaDBError.self) { try config.validate() }
    }
}
