import Foundation
import GRDB
import SchemaDB

extension SQLiteRegistryStore {
    /// The registry's own forward-only migrations, each in its own transaction. The format
    /// version is the number of them applied; a file with migrations this list does not know
    /// was written by a newer version and is refused.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: tenants, events, fleet ledger") { db in
            try db.execute(sql: """
                CREATE TABLE tenants (
                    id INTEGER PRIMARY KEY,
                    slug TEXT UNIQUE,
                    display_name TEXT,
                    schema_name TEXT NOT NULL UNIQUE,
                    placement TEXT NOT NULL DEFAULT 'default',
                    state TEXT NOT NULL,
                    migration_file TEXT,
                    migration_checksum TEXT,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    last_error TEXT
                );
                CREATE INDEX tenants_state ON tenants (state, slug);
                CREATE TABLE tenant_events (
                    id INTEGER PRIMARY KEY,
                    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
                    at REAL NOT NULL,
                    kind TEXT NOT NULL,
                    detail TEXT
                );
                CREATE INDEX tenant_events_tenant ON tenant_events (tenant_id, id);
                CREATE TABLE fleet_runs (
                    id INTEGER PRIMARY KEY,
                    started_at REAL NOT NULL,
                    finished_at REAL,
                    status TEXT NOT NULL,
                    target_file TEXT,
                    target_checksum TEXT,
                    parameters TEXT,
                    error TEXT
                );
                CREATE TABLE fleet_run_items (
                    run_id INTEGER NOT NULL REFERENCES fleet_runs (id),
                    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
                    position INTEGER NOT NULL,
                    status TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    error TEXT,
                    duration_ms INTEGER,
                    files_applied TEXT,
                    started_at REAL,
                    finished_at REAL,
                    PRIMARY KEY (run_id, tenant_id)
                );
                CREATE INDEX fleet_run_items_status ON fleet_run_items (run_id, status, position);
                """)
        }
        migrator.registerMigration("v2: generations, registry record, released slugs") { db in
            try db.execute(sql: """
                ALTER TABLE tenants ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
                CREATE TABLE registry_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE released_slugs (
                    slug TEXT PRIMARY KEY NOT NULL,
                    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
                    released_at REAL NOT NULL
                );
                """)
            try db.execute(sql: "INSERT INTO registry_meta (key, value) VALUES (?, ?), (?, ?)", arguments: [
                RegistryMeta.id, RegistryMeta.makeID(),
                RegistryMeta.slugReuseDelay, String(RegistryMeta.defaultSlugReuseDelay.wholeMilliseconds),
            ])
        }
        migrator.registerMigration("v3: placements and moves") { db in
            try db.execute(sql: """
                CREATE TABLE placements (
                    name TEXT PRIMARY KEY NOT NULL,
                    url TEXT,
                    system_identifier TEXT,
                    database_name TEXT,
                    weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
                    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'draining')),
                    created_at REAL NOT NULL,
                    UNIQUE (system_identifier, database_name)
                );
                CREATE INDEX tenants_placement ON tenants (placement, state);
                ALTER TABLE tenants ADD COLUMN move_target TEXT;
                ALTER TABLE tenants ADD COLUMN move_return_state TEXT;
                ALTER TABLE tenants ADD COLUMN move_mode TEXT;
                """)
            try db.execute(sql: "INSERT INTO placements (name, created_at) VALUES (?, ?)", arguments: [Placement.defaultName, Date().timeIntervalSince1970])
        }
        return migrator
    }
}
