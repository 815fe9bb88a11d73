-- Invoices and their lines. Amounts are in cents.
CREATE TABLE {{tables.invoices}} (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES {{tables.accounts}} (id),
    number text NOT NULL UNIQUE,
    issued_on date NOT NULL DEFAULT current_date,
    paid_at timestamptz
);
CREATE INDEX invoices_unpaid ON {{tables.invoices}} (account_id) WHERE paid_at IS NULL;

CREATE TABLE {{tables.invoice_lines}} (
    invoice_id bigint NOT NULL REFERENCES {{tables.invoices}} (id) ON DELETE CASCADE,
    position int NOT NULL,
    description text NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    unit_cents bigint NOT NULL CHECK (unit_cents >= 0),
    PRIMARY KEY (invoice_id, position)
);
