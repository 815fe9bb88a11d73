import Foundation
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
        ("postgres://u@h/d?passwd=hunter2", "unknown parameter (not shown)"),
        ("postgres://u@h/d?hunter2", "unknown parameter (not shown)"),
        ("postgres://u@h/d?options=hunter2", "\"options\" is not supported"),
        ("postgres://u:hun/ter2@h/d", "unencoded /, ?, # or @"),
        ("postgres://u:hunter2/x@h/d", "unencoded /, ?, # or @"),
        ("postgres://u:hun?ter2@h/d", "unencoded /, ?, # or @"),
        ("postgres://u:hun#ter2@h/d", "unencoded /, ?, # or @"),
        ("postgres://u:hunter2@h:hunter2/d", "port"),
        ("postgres://nobody:hunter2@h/db%00user%00postgres", "database name contains a NUL"),
        ("postgres://nobody%00user:hunter2@h/db", "user name contains a NUL"),
        ("postgres://u:hunter2@h/d?application_name=a%1B%5B31m", "parameter value contains a NUL or another control character"),
    ])
    func badURLsAreRefusedWithoutShowingThePassword(url: String, problem: String) {
        #expect {
            _ = try DatabaseConfig(url: url)
        } throws: { error in
            let text = String(describing: error) + String(reflecting: error)
            return (error as? SchemaDBError)?.code == .invalidConfiguration && text.contains(problem) && !text.contains("hunter2")
        }
    }

    @Test func libpqParametersInTheQueryStringAreRead() throws {
        let config = try DatabaseConfig(url: "postgres://h?user=app&password=p%26w&dbname=main&port=6000")
        #expect(config.user == "app" && config.password == "p&w" && config.database == "main" && config.port == 6000)
    }

    @Test func aMissingPasswordComesFromPGPASSWORDOrAPrivatePasswordFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pgpass-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("pgpass").path
        try """
            # host:port:database:user:password
            other:5432:*:app:wrong
            db:5432:main:app:fr\\:om\\\\file
            *:*:*:*:fallback
            """.write(toFile: file, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        let url = try DatabaseConfig(url: "postgres://app@db:5432/main")
        #expect(try url.fillingPassword(from: ["PGPASSFILE": file]).password == "fr:om\\file")
        #expect(try DatabaseConfig(url: "postgres://x@elsewhere/y").fillingPassword(from: ["PGPASSFILE": file]).password == "fallback")
        #expect(try url.fillingPassword(from: ["PGPASSFILE": file, "PGPASSWORD": "env"]).password == "env")
        #expect(try DatabaseConfig(url: "postgres://app:given@db/main").fillingPassword(from: ["PGPASSFILE": file]).password == "given")
        #expect(try DatabaseConfig.fromEnvironment(["DATABASE_URL": "postgres://app@db:5432/main", "PGPASSFILE": file]).password == "fr:om\\file")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: file)
        #expect { _ = try url.fillingPassword(from: ["PGPASSFILE": file]) } throws: {
            "\($0)".contains("chmod 600") && !"\($0)".contains("fr:om")
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
