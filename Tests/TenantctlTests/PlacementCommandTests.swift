import Foundation
import SchemaDB
import SchemaDBTesting
import Testing

@Suite(integration, .timeLimit(.minutes(3)))
struct PlacementCommandTests {
    @Test(arguments: RegistryKind.allCases)
    func placementsAreAddedListedDrainedAndTenantsPlacedOnThem(registry: RegistryKind) async throws {
        try await CLIFixture.run(registry) { cli in
            try await TestPostgres.withTemporaryDatabase(pool: cli.pool) { other in
                var withPassword = other
                withPassword.password = "pl4cement-secret"
                // A password in the URL reaches the server (trust auth ignores it), never the registry or the output.
                let url = withPassword.url(maskingPassword: false)
                let added = try await cli.run("placements", "add", "eu-2", url, "--weight", "2", "--json")
                #expect(added.status == 0, "\(added.stderr)")
                #expect(!added.stdout.contains("pl4cement-secret") && !added.stderr.contains("pl4cement-secret"))
                #expect(try added.object()["database_name"] as? String == other.database)

                // The URL can come from the environment instead; a bad name or a taken one is a usage error.
                let fromEnvironment = try await cli.run("placements", "add", "eu-3", environment: ["TENANCY_PLACEMENT_EU_3_URL": url])
                #expect(fromEnvironment.status == 2 && fromEnvironment.stderr.contains("already a placement") && !fromEnvironment.stderr.contains("pl4cement-secret"))
                #expect(try await cli.run("placements", "add", "EU", url).status == 2)
                #expect(try await cli.run("placements", "add", "eu-2", url).status == 2)
                let unreachable = try await cli.run("placements", "add", "gone", "postgres://u:hunter2@127.0.0.1:1/db")
                #expect(unreachable.status == 1 && unreachable.stderr.contains("gone") && !unreachable.stderr.contains("hunter2"))

                let created = try await cli.json("create", "acme", "--placement", "eu-2")
                #expect(created["placement"] as? String == "eu-2")
                #expect(try await cli.json("show", "acme")["placement"] as? String == "eu-2")
                #expect(try await cli.run("create", "globex", "--placement", "nowhere").status == 2)

                let listed = try #require(try await cli.run("placements", "list", "--json").json() as? [[String: Any]])
                #expect(listed.map { $0["name"] as? String } == ["default", "eu-2"])
                #expect(listed.map { $0["tenants"] as? Int } == [0, 1] && listed.allSatisfy { $0["reachable"] as? Bool == true })
                #expect(!(try await cli.run("placements", "list", "--json").stdout.contains("pl4cement-secret")))

                #expect(try await cli.run("placements", "drain", "eu-2").status == 0)
                let refused = try await cli.run("create", "initech", "--placement", "eu-2")
                #expect(refused.status == 2 && refused.stderr.contains("draining"))
                #expect(try await cli.json("create", "initech")["placement"] as? String == "default")
                let shown = try await cli.json("placements", "show", "eu-2")
                #expect(shown["state"] as? String == "draining" && shown["weight"] as? Int == 2)
                #expect(try await cli.run("placements", "open", "eu-2").status == 0)
                #expect(try await cli.run("placements", "weight", "eu-2", "0").status == 2)

                // Moves: online needs a server with wal_level=logical (this one is not), offline works anywhere.
                try await cli.pool.database(schema: try await cli.schema(of: "initech")).execute("INSERT INTO {{tables.accounts}} (email) VALUES ($1)", "a@initech.test")
                let online = try await cli.run("move", "initech", "--to", "eu-2")
                #expect(online.status == 2 && online.stderr.contains("wal_level") && online.stderr.contains("offline"))
                #expect(try await cli.json("show", "initech")["status"] as? String == "active")
                let moved = try await cli.json("move", "initech", "--to", "eu-2", "--offline")
                #expect(moved["outcome"] as? String == "moved" && moved["placement"] as? String == "eu-2" && moved["rows"] as? Int == 1)
                let shownAfterMove = try await cli.json("show", "initech")
                #expect(shownAfterMove["placement"] as? String == "eu-2")
                #expect((shownAfterMove["migrations"] as? [[String: Any]])?.map { $0["filename"] as? String } == ["001_accounts.sql"])
                let notMoving = try await cli.run("move", "initech", "--resume")
                #expect(notMoving.status == 1 && notMoving.stderr.contains("not moving"))
                #expect(try await cli.run("move", "initech", "--to", "nowhere", "--offline").status == 2)

                // Rebalance: a plan changes nothing; applying needs --offline.
                let planned = try await cli.json("rebalance", "--plan")
                #expect((planned["loads"] as? [[String: Any]])?.map { $0["placement"] as? String } == ["default", "eu-2"])
                #expect(planned["moves"] is [Any] && planned["applied"] is NSNull)
                #expect(try await cli.run("rebalance", "--plan", "--offline").status == 2)
                #expect(try await cli.run("rebalance", "--plan", "--apply").status == 2)
                let byBytes = try await cli.json("rebalance", "--plan", "--by", "bytes")
                #expect(byBytes["measure"] as? String == "bytes")
                #expect(((byBytes["loads"] as? [[String: Any]]) ?? []).reduce(0) { $0 + ($1["before"] as? Int ?? 0) } > 8192, "\(byBytes)")
                let removeOpen = try await cli.run("placements", "remove", "eu-2")
                #expect(removeOpen.status == 2 && removeOpen.stderr.contains("drain it first") && removeOpen.stderr.split(separator: "\n").count == 1)
                #expect(try await cli.run("placements", "remove", "nowhere").status == 2)
                let badMeasure = try await cli.run("rebalance", "--plan", "--by", "rows")
                #expect(badMeasure.status == 2 && badMeasure.stderr.contains("--by takes tenants or bytes"))

                let dropped = try await cli.run("drop", "acme", "--yes")
                #expect(dropped.status == 0, "\(dropped.stderr)")
                #expect(try await cli.run("drop", "initech", "--yes").status == 0)
            }
        }
    }
}
