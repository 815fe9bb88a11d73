-- Customer accounts of the tenant.
CREATE TABLE {{tables.accounts}} (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email_lower ON {{tables.accounts}} (lower(email));
