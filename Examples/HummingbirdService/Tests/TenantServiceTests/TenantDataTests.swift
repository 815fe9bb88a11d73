import Foundation
import Hummingbird
import HummingbirdTesting
import SchemaDB
import Tenancy
import Testing
@testable import TenantService

@Suite(integration, .timeLimit(.minutes(3)))
struct TenantDataTests {
    @Test func anInvoiceIsWrittenWithItsLinesInOneTransactionAndReadFromTheView() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.create("acme")
            try await fixture.replica().test(.router) { client async throws in
                let account = try #require(try await client.send("/accounts", .post, tenant: "acme", json: #"{"email": "a@acme.test", "name": "A"}"#).json() as? [String: Any])
                let accountID = try #require(account["id"] as? Int)
                let invoice = #"{"account_id": \#(accountID), "number": "INV-1", "lines": [{"description": "Plan", "quantity": 2, "unit_cents": 1500}, {"description": "Seat", "quantity": 1, "unit_cents": 700}]}"#

                let created = try await client.send("/invoices", .post, tenant: "acme", json: invoice)
                #expect(created.status == .created)
                #expect((try created.json() as? [String: Any])?["total_cents"] as? Int == 3700)
                #expect(try await client.send("/invoices", .post, tenant: "acme", json: invoice).status == .conflict)
                // A bad line rolls the whole invoice back.
                let badLine = #"{"account_id": \#(accountID), "number": "INV-2", "lines": [{"description": "Ok", "quantity": 1, "unit_cents": 1}, {"description": "Bad", "quantity": 0, "unit_cents": 1}]}"#
                #expect(try await client.send("/invoices", .post, tenant: "acme", json: badLine).status == .unprocessableContent)
                #expect(try await client.send("/invoices", .post, tenant: "acme", json: #"{"account_id": 999, "number": "INV-3", "lines": [{"description": "x", "quantity": 1, "unit_cents": 1}]}"#).status == .unprocessableContent)

                let open = try #require(try await client.send("/invoices/open", tenant: "acme").json() as? [[String: Any]])
                #expect(open.map { $0["number"] as? String } == ["INV-1"] && open.first?["total_cents"] as? Int == 3700)
                let invoiceID = try #require(open.first?["id"] as? Int)
                let paid = try await client.send("/invoices/\(invoiceID)/pay", .post, tenant: "acme")
                #expect(paid.status == .noContent, "\(paid.status) \(paid.text)")
                #expect(try await client.send("/invoices/\(invoiceID)/pay", .post, tenant: "acme").status == .notFound)
                #expect(try await client.send("/invoices/open", tenant: "acme").text == "[]")
            }
            let acme = fixture.pool.database(schema: try await fixture.schema(of: "acme"))
            #expect(try await acme.fetchValue("SELECT count(*) FROM {{tables.invoices}}", as: Int.self) == 1)
            #expect(try await acme.fetchValue("SELECT count(*) FROM {{tables.invoice_lines}}", as: Int.self) == 2)
        }
    }

    @Test func aDuplicateEmailIsAConflictAndABadPlanIsRefused() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.create("acme")
            try await fixture.replica().test(.router) { client async throws in
                #expect(try await client.send("/accounts", .post, tenant: "acme", json: #"{"email": "a@acme.test", "name": "A"}"#).status == .created)
                #expect(try await client.send("/accounts", .post, tenant: "acme", json: #"{"email": "A@acme.test", "name": "B"}"#).status == .conflict)
                let badPlan = try await client.send("/accounts", .post, tenant: "acme", json: #"{"email": "c@acme.test", "name": "C", "plan": "gold"}"#)
                #expect(badPlan.status == .unprocessableContent && !badPlan.text.contains("gold"))
            }
        }
    }

    @Test func signUpOnboardsFromASpareThenByProvisioning() async throws {
        try await ServiceFixture.run { fixture in
            try await fixture.operatorTenancy.fillSpares(count: 1)
            try await fixture.replica().test(.router) { client async throws in
                let first = try await client.send("/tenants", .post, json: #"{"slug": "newco", "name": "New Co"}"#)
                #expect(first.status == .created)
                #expect((try first.json() as? [String: Any])?["onboarding"] as? String == "claimed_spare")
                let second = try await client.send("/tenants", .post, json: #"{"slug": "other"}"#)
                #expect((try second.json() as? [String: Any])?["onboarding"] as? String == "provisioned")

                #expect(try await client.send("/tenants", .post, json: #"{"slug": "newco"}"#).status == .conflict)
                #expect(try await client.send("/tenants", .post, json: #"{"slug": "Bad Slug"}"#).status == .unprocessableContent)
                #expect(try await client.send("/accounts", .post, tenant: "newco", json: #"{"email": "a@newco.test", "name": "A"}"#).status == .created)
            }
            #expect(try await fixture.operatorTenancy.tenant("newco")?.displayName == "New Co")
        }
    }
}
