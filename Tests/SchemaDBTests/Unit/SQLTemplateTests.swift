import SchemaDB
import Testing

@Suite struct SQLTemplateTests {
    let acme = try! SQLIdentifier("acme")

    @Test func tablesRenderSchemaQualifiedAndQuoted() throws {
        let template: SQLTemplate = "SELECT * FROM {{tables.users}} u JOIN {{tables.orders}} o ON o.user_id = u.id"
        #expect(try template.render(schema: acme) == #"SELECT * FROM "acme"."users" u JOIN "acme"."orders" o ON o.user_id = u.id"#)
    }

    @Test func withoutSchemaTablesRenderUnqualified() throws {
        let template: SQLTemplate = "SELECT * FROM {{tables.users}}"
        #expect(try template.render(schema: nil) == #"SELECT * FROM "users""#)
    }

    @Test func otherSchemaTablesAndTheSchemaPlaceholderRender() throws {
        let template: SQLTemplate = "CREATE VIEW {{schema}}.v AS SELECT * FROM {{tables.billing.plans}}"
        #expect(try template.render(schema: acme) == #"CREATE VIEW "acme".v AS SELECT * FROM "billing"."plans""#)
    }

    @Test func schemaPlaceholderWithoutSchemaIsAnError() {
        let template: SQLTemplate = "CREATE TABLE {{schema}}.t (id int)"
        #expect { try template.render(schema: nil) } throws: { ($0 as? SchemaDBError)?.code == .invalidTemplate }
    }

    @Test func mixedCaseSchemasStayDistinct() throws {
        let template: SQLTemplate = "SELECT 1 FROM {{tables.Users}}"
        #expect(try template.render(schema: try SQLIdentifier("Acme")) == #"SELECT 1 FROM "Acme"."Users""#)
    }

    @Test func placeholdersInsideStringLiteralsAndCommentsAreLeftAlone() throws {
        let sql = """
            -- copies {{tables.users}}
            /* also {{tables.users}} /* nested {{tables.x}} */ still comment {{tables.y}} */
            INSERT INTO {{tables.log}} (note, other) VALUES ('{{tables.users}} isn''t {{schema}}', E'it\\'s {{tables.z}}')
            """
        let rendered = try SQLTemplate(sql).render(schema: acme)
        #expect(rendered == """
            -- copies {{tables.users}}
            /* also {{tables.users}} /* nested {{tables.x}} */ still comment {{tables.y}} */
            INSERT INTO "acme"."log" (note, other) VALUES ('{{tables.users}} isn''t {{schema}}', E'it\\'s {{tables.z}}')
            """)
    }

    @Test func placeholdersInsideQuotedIdentifiersAreLeftAlone() throws {
        #expect(try SQLTemplate(#"SELECT "{{tables.x}}" FROM {{tables.t}}"#).render(schema: acme) == #"SELECT "{{tables.x}}" FROM "acme"."t""#)
    }

    @Test func placeholdersInsideDollarQuotedBodiesAreSubstituted() throws {
        let sql = """
            CREATE FUNCTION {{schema}}.touch() RETURNS trigger AS $body$
            BEGIN UPDATE {{tables.stats}} SET n = n + 1; RETURN NEW; END
            $body$ LANGUAGE plpgsql
            """
        let rendered = try SQLTemplate(sql).render(schema: acme)
        #expect(rendered.contains(#"UPDATE "acme"."stats" SET"#))
        #expect(rendered.hasPrefix(#"CREATE FUNCTION "acme".touch()"#))
    }

    @Test(arguments: [
        ("SELECT * FROM {{table.users}}", "{{table.users}}"),
        ("SELECT * FROM {{users}}", "{{users}}"),
        ("SELECT * FROM {{tables.}}", "{{tables.}}"),
        ("SELECT * FROM {{tables.a.b.c}}", "{{tables.a.b.c}}"),
        ("SELECT * FROM {{tables.bad-name}}", "{{tables.bad-name}}"),
        ("SELECT * FROM {{tables.users", "{{tables.users"),
    ])
    func unknownAndMalformedPlaceholdersAreNamedInTheError(sql: String, placeholder: String) {
        #expect {
            _ = try SQLTemplate(sql)
        } throws: { error in
            guard let error = error as? SchemaDBError else { return false }
            return error.code == .invalidTemplate && error.message.contains(placeholder)
        }
        let literal = SQLTemplate(stringLiteral: sql)
        #expect(throws: SchemaDBError.self) { try literal.render(schema: nil) }
    }

    @Test func whitespaceInsidePlaceholdersIsAllowed() throws {
        #expect(try SQLTemplate("SELECT * FROM {{ tables.users }}").render(schema: acme) == #"SELECT * FROM "acme"."users""#)
    }

    @Test func textWithoutPlaceholdersRendersUnchanged() throws {
        let sql = "SELECT $1::int + 1, '{}'::jsonb, ARRAY[1] @> '{1}'"
        #expect(try SQLTemplate(sql).render(schema: acme) == sql)
    }

    @Test func dollarParametersAndIdentifierDollarsAreNotDollarQuotes() throws {
        let template = SQLTemplate("SELECT a$b, $1 FROM {{tables.t}} WHERE x = $2")
        #expect(try template.render(schema: acme) == #"SELECT a$b, $1 FROM "acme"."t" WHERE x = $2"#)
    }
}
