public import Foundation
public import Hummingbird
import SchemaDB

/// An open invoice with its total, as `GET /invoices/open` answers it.
public struct OpenInvoice: Codable, Sendable, ResponseEncodable {
    public var id: Int64
    public var number: String
    public var accountId: Int64
    public var issuedOn: Date
    public var totalCents: Int64

    public init(id: Int64, number: String, accountId: Int64, issuedOn: Date, totalCents: Int64) {
        (self.id, self.number, self.accountId, self.issuedOn, self.totalCents) = (id, number, accountId, issuedOn, totalCents)
    }
}

/// A tenant's invoices: written in one transaction with their lines, read from the
/// `open_invoices` view of the tenant migration set.
public struct InvoiceRoutes: Sendable {

    struct NewInvoice: Decodable {
        struct Line: Decodable {
            var description: String
            var quantity: Int
            var unitCents: Int64
        }
        var accountId: Int64
        var number: String
        var lines: [Line]
    }

    struct CreatedInvoice: Codable, ResponseEncodable {
        var id: Int64
        var number: String
        var totalCents: Int64
    }

    public init() {}

    public func add(to group: RouterGroup<TenantContext>) {
        group.get("invoices/open", use: listOpen)
        group.post("invoices", use: create)
        group.post("invoices/:id/pay", use: pay)
    }

    @Sendable func listOpen(_ request: Request, context: TenantContext) async throws -> [OpenInvoice] {
        try await context.database.fetchAll(
            "SELECT id, number, account_id, issued_on, total_cents FROM {{tables.open_invoices}} ORDER BY id LIMIT 100", as: OpenInvoice.self)
    }

    @Sendable func create(_ request: Request, context: TenantContext) async throws -> EditedResponse<CreatedInvoice> {
        let input = try await request.decode(as: NewInvoice.self, context: context)
        guard !input.number.isEmpty, !input.lines.isEmpty, input.lines.count <= 100 else {
            throw HTTPError(.unprocessableContent, message: "an invoice needs a number and 1 to 100 lines")
        }
        do {
            let created = try await context.database.withTransaction { tx in
                let id = try await tx.insertReturningID(
                    "INSERT INTO {{tables.invoices}} (account_id, number) VALUES ($1, $2)", input.accountId, input.number, as: Int64.self)
                _ = try await tx.executeMany(
                    "INSERT INTO {{tables.invoice_lines}} (invoice_id, position, description, quantity, unit_cents) VALUES ($1, $2, $3, $4, $5)",
                    input.lines.enumerated().map { [id, $0.offset + 1, $0.element.description, $0.element.quantity, $0.element.unitCents] })
                let total = try await tx.fetchValue("SELECT {{schema}}.invoice_total($1)", id, as: Int64.self) ?? 0
                return CreatedInvoice(id: id, number: input.number, totalCents: total)
            }
            return EditedResponse(status: .created, response: created)
        } catch let error as SchemaDBError where error.code == .uniqueViolation {
            throw HTTPError(.conflict, message: "an invoice with this number exists")
        } catch let error as SchemaDBError where error.sqlState == "23503" {
            throw HTTPError(.unprocessableContent, message: "no such account")
        } catch let error as SchemaDBError where error.sqlState == "23514" {
            throw HTTPError(.unprocessableContent, message: "quantities must be positive and prices not negative")
        }
    }

    @Sendable func pay(_ request: Request, context: TenantContext) async throws -> HTTPResponse.Status {
        let id = try context.parameters.require("id", as: Int64.self)
        let paid = try await context.database.execute(
            "UPDATE {{tables.invoices}} SET paid_at = now() WHERE id = $1 AND paid_at IS NULL", id)
        guard paid == 1 else { throw HTTPError(.notFound, message: "no open invoice with this id") }
        return .noContent
    }
}
