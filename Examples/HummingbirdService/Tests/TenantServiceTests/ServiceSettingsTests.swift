import Tenancy
import Testing
@testable import TenantService

struct ServiceSettingsTests {
    let base = ["DATABASE_URL": "postgres://app:s3cr%40t@db.internal:5432/app"]

    @Test func theTenantSourceAndStartUpComeFromTheEnvironment() throws {
        var environment = base
        environment["TENANT_FROM"] = "subdomain"
        environment["TENANT_DOMAIN"] = "example.com"
        environment["TENANCY_STARTUP_MIGRATES"] = "false"
        environment["TENANCY_FLEET_LOCK_WAIT"] = "45"
        environment["TENANCY_MIGRATES_ON_REQUEST"] = "yes"
        environment["PORT"] = "9000"
        let settings = try ServiceSettings.fromEnvironment(environment)
        #expect(settings.tenancy.directory.migratesTenantsBehindMigrationSet)
        #expect(try ServiceSettings.fromEnvironment(base).tenancy.directory.migratesTenantsBehindMigrationSet == false)
        #expect(settings.tenantSource == .subdomain(of: "example.com"))
        #expect(settings.startup.migrates == false && settings.startup.fleetLockWait == .seconds(45))
        #expect(settings.port == 9000 && settings.tenancy.createsRegistry == false)
        #expect(try ServiceSettings.fromEnvironment(base).tenantSource == .header("X-Tenant"))
    }

    @Test(arguments: [
        ("TENANT_FROM", "cookie", "TENANT_FROM=cookie is not header, subdomain or path"),
        ("TENANT_FROM", "subdomain", "TENANT_FROM=subdomain needs TENANT_DOMAIN"),
        ("PORT", "http", "PORT=http is not a number from 0 to 65535"),
        ("TENANCY_FLEET_LOCK_WAIT", "-1", "TENANCY_FLEET_LOCK_WAIT=-1 is not a number"),
        ("TENANCY_STARTUP_MIGRATES", "maybe", "TENANCY_STARTUP_MIGRATES=maybe is not true or false"),
        ("TENANCY_MIGRATES_ON_REQUEST", "sometimes", "TENANCY_MIGRATES_ON_REQUEST=sometimes is not true or false"),
    ])
    func aBadSettingIsNamedWithWhatToDo(name: String, value: String, message: String) {
        var environment = base
        environment[name] = value
        #expect { try ServiceSettings.fromEnvironment(environment) } throws: {
            "\($0)".contains(message) && !"\($0)".contains("s3cr")
        }
    }
}
