import Foundation
import Hummingbird
import HummingbirdTesting
import InMemoryLogging
import Logging
import SchemaDB
import Tenancy
import Testing
@testable import TenantService

@Suite(integration, .timeLimit(.minutes(3)))
struct TenantRoutingTests {
    @Test func writesLandInTheRequestedTenantsSchemaOnly() async throws {
        try await ServiceFixture.run { fixture in
            for slug in ["acme", "globex"] { try await fixture.operatorTenancy.create(slug) }
            try await fixture.replica().test(.router) { client async throws in
                let created = try await client.send("/accounts", .post, tenant: "acme", json: #"{"email": "ann@acme.test", "name": "Ann", "plan": "team"}"#)
                #expect(created.status == .created)
                let account = try #require(try created.json() as? [String: Any])
                #expect(account["email"] as? String == "ann@acme.test" && account["plan"] as? String == "team" && account["created_at"] is String)

                let acme = try #require(try await client.send("/accounts", tenant: "acme").json() as? [[String: Any]])
                let globex = try #require(try await client.send("/accounts", tenant: "globex").json() as? [[String: Any]])
                #expect(acme.map { $0["email"] as? String } == ["ann@acme.test"])
                #expect(globex.isEmpty)
            }
            // Read behind the service's back: the row is in acme's schema and nowhere else.
            let acme = try await fixture.schema(of: "acme")
            let globex = try await fixture.schema(of: "globex")
            #expect(try await fixture.pool.database(schema: acme).fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 1)
            #expect(try await fixture.pool.database(schema: globex).fetchValue("SELECT count(*) FROM {{tables.accounts}}", as: Int.self) == 0)
        }
    }

    @Test func aTenantIsResolvedFromAPathPrefix() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.create("acme")
            try await fixture.replica(source: .pathParameter("tenant")).test(.router) { client async throws in
                #expect(try await client.send("/t/acme/accounts", .post, json: #"{"email": "a@acme.test", "name": "A"}"#).status == .created)
                #expect(try await client.send("/t/acme/accounts").text.contains("a@acme.test"))
                #expect(try await client.send("/t/nobody/accounts").status == .notFound)
                #expect(try await client.send("/accounts", tenant: "acme").status == .notFound, "the header means nothing here")
            }
        }
    }

    @Test(arguments: [
        ("acme.example.com", "acme"), ("Acme.Example.com:8443", "acme"), ("acme.example.com.", "acme"),
        ("example.com", nil), ("a.b.example.com", nil), ("acme.badexample.com", nil), ("acme.example.com.evil.test", nil), ("[::1]:80", nil),
    ] as [(String, String?)])
    func aSubdomainNamesOneTenantUnderTheConfiguredDomainOnly(authority: String, slug: String?) {
        #expect(TenantSource.tenantLabel(in: authority, under: "example.com") == slug)
    }

    @Test func everyTenantThatCannotBeServedGetsItsOwnStatusAndNothingLeaks() async throws {
        try await ServiceFixture.run { fixture in
            let tenancy = fixture.operatorTenancy
            for slug in ["live", "paused", "gone", "setup"] { try await tenancy.create(slug) }
            try await tenancy.suspend("paused")
            try await tenancy.delete("gone", confirmingDataLoss: true)
            // Another process is provisioning "setup" right now, as far as the registry says.
            try await fixture.pool.database(schema: try SQLIdentifier(fixture.registrySchema))
                .execute("UPDATE {{tables.tenants}} SET state = 'provisioning' WHERE slug = 'setup'")

            try await fixture.replica().test(.router) { client async throws in
                let cases: [(tenant: String?, status: HTTPResponse.Status)] = [
                    ("live", .ok), (nil, .notFound), ("nobody", .notFound), ("Not A Slug!", .notFound),
                    ("paused", .forbidden), ("gone", .gone), ("setup", .serviceUnavailable),
                ]
                for (tenant, status) in cases {
                    let response = try await client.send("/accounts", tenant: tenant)
                    #expect(response.status == status, "tenant \(tenant ?? "none")")
                    #expect(!response.text.contains(fixture.schemaPrefix) && !response.text.contains("SELECT") && !response.text.contains("registry"))
                }
                #expect(try await client.send("/accounts", tenant: "setup").headers[.retryAfter] == "5")
            }
        }
    }

    @Test func aFailingQueryIsA500WithAGenericBodyAndALogLineNamingTheCause() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.create("acme")
            try await fixture.pool.database(schema: try await fixture.schema(of: "acme")).execute("DROP VIEW {{tables.open_invoices}}")
            let logs = InMemoryLogHandler()
            try await fixture.replica(logger: Logger(label: "svc", factory: { _ in logs })).test(.router) { client async throws in
                let response = try await client.send("/invoices/open", tenant: "acme")
                #expect(response.status == .internalServerError)
                #expect(!response.text.contains("open_invoices") && !response.text.contains(fixture.schemaPrefix))
            }
            let line = try #require(logs.entries.first { $0.message.description == "request failed" })
            #expect(line.level == .error && line.metadata["http.status"] == "500" && line.metadata["http.route"] == "/invoices/open")
            #expect(line.metadata["tenant"] == "acme")
            #expect("\(line.metadata["error"] ?? "")".contains("open_invoices"), "the log names the cause")
        }
    }
}
