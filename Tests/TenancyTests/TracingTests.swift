import Foundation
import InMemoryTracing
import SchemaDB
import Testing
import Tracing
@testable import Tenancy

/// Spans of onboarding, fleet runs and tenant queries, with the OpenTelemetry database
/// attributes, the tenant's slug, and never a data value.
@Suite(integration, .timeLimit(.minutes(2)))
struct TracingTests {
    static let secret = "ada.lovelace@acme.test"

    func attribute(_ span: FinishedInMemorySpan, _ name: String) -> SpanAttribute? {
        span.attributes.get(name)
    }

    @Test func onboardingQueriesAndFleetRunsAreSpansWithTheTenantAndNoDataValue() async throws {
        try await TenancyFixture.run(.postgres) { fixture in
            let tracer = InMemoryTracer()
            let schema = try await withTracer(tracer) {
                let tenancy = try fixture.makeTenancy()
                let schema = try await tenancy.create("acme").tenant.schema
                let acme = try await tenancy.database(for: "acme")
                try await acme.execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", Self.secret)
                await #expect(throws: SchemaDBError.self) {
                    try await acme.execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", Self.secret)
                }
                try fixture.writeMigration("003_notes.sql", "CREATE TABLE {{tables.notes}} (id int);")
                try await fixture.makeTenancy().migrateAllTenants()
                return schema
            }
            let spans = tracer.finishedSpans

            let onboard = try #require(spans.first { $0.operationName == "tenancy.onboard" })
            #expect(attribute(onboard, "tenant.slug") == .string("acme") && attribute(onboard, "db.namespace") == .string(schema))
            #expect(attribute(onboard, "tenancy.onboarding") == .string("provisioned"))

            let inserts = spans.filter { $0.operationName == "INSERT" && attribute($0, "tenant.slug") == .string("acme") }
            #expect(inserts.count == 2)
            for insert in inserts {
                #expect(insert.kind == .client)
                #expect(attribute(insert, "db.system.name") == .string("postgresql") && attribute(insert, "db.namespace") == .string(schema))
                #expect(attribute(insert, "db.operation.name") == .string("INSERT"))
            }
            #expect(inserts.last?.status?.code == .error && attribute(inserts.last!, "error.type") == .string("23505"))

            let run = try #require(spans.first { $0.operationName == "tenancy.fleet.run" })
            #expect(attribute(run, "tenancy.fleet.status") == .string("completed"))
            let migrated = try #require(spans.first { $0.operationName == "tenancy.fleet.migrate" && attribute($0, "tenant.slug") == .string("acme") })
            #expect(attribute(migrated, "tenancy.fleet.files_applied") == .int64(1) && migrated.traceID == run.traceID)

            for span in spans {
                span.attributes.forEach { key, value in
                    #expect(!"\(value)".contains(Self.secret), "span \(span.operationName) carries a data value in \(key)")
                }
                #expect(span.errors.allSatisfy { !"\($0.error)".contains(Self.secret) })
            }
        }
    }
}
