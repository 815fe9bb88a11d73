-- Projects belong to an account.
CREATE TABLE {{tables.projects}} (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES {{tables.accounts}} (id) ON DELETE CASCADE,
    name text NOT NULL,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
);
CREATE INDEX projects_account ON {{tables.projects}} (account_id) WHERE status = 'active';
