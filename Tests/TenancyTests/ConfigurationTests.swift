import Foundation
import SchemaDB
import Testing
@testable import Tenancy

struct ConfigurationTests {
    let tenants = try! DatabaseConfig(url: "postgres://app@db.internal:5432/app")

    @Test func theEnvironmentGivesWhatTenantctlReads() throws {
        let configuration = try Tenancy.Configuration.fromEnvironment([
            "TENANCY_REGISTRY": "/var/lib/app/registry.sqlite", "TENANCY_SCHEMA_PREFIX": "acct_", "TENANCY_MIGRATIONS": "/srv/migrations",
        ], database: tenants)
        #expect(configuration.registry.path == "/var/lib/app/registry.sqlite")
        #expect(configuration.schemaPrefix == "acct_")
        #expect(configuration.migrationsDirectory?.path == "/srv/migrations")
        let defaults = try Tenancy.Configuration.fromEnvironment([:], database: tenants)
        #expect(defaults.registry.path == Tenancy.Configuration().registry.path && defaults.schemaPrefix == "tenant_")
    }

    @Test func aRegistryInTheTenantsDatabaseSharesTheirPool() throws {
        let same = try Tenancy.Configuration.fromEnvironment(
            ["TENANCY_REGISTRY": "postgres://app@db.internal:5432/app", "TENANCY_REGISTRY_SCHEMA": "registry"], database: tenants)
        #expect(same.registry.schema == "registry" && same.registry.database == nil)
        let elsewhere = try Tenancy.Configuration.fromEnvironment(["TENANCY_REGISTRY": "postgresql://ops@control.internal/ops"], database: tenants)
        #expect(elsewhere.registry.schema == TenantRegistry.defaultSchema && elsewhere.registry.database?.host == "control.internal")
    }

    @Test(arguments: ["mysql://u:hunter2@h/d", "u:hunter2@h/d"])
    func otherURLsAreRefusedWithoutEcho(value: String) {
        #expect {
            try Tenancy.Configuration.fromEnvironment(["TENANCY_REGISTRY": value], database: tenants)
        } throws: { error in
            (error as? TenancyError)?.code == .invalidArgument && !"\(error)".contains("hunter2")
        }
    }
}
