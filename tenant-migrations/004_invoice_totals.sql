-- A function for one invoice's total, and a view of open invoices with their totals.
CREATE FUNCTION {{schema}}.invoice_total(invoice bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(quantity * unit_cents), 0)::bigint FROM {{tables.invoice_lines}} WHERE invoice_id = invoice
$$;

CREATE VIEW {{tables.open_invoices}} AS
    SELECT i.id, i.number, i.account_id, i.issued_on, {{schema}}.invoice_total(i.id) AS total_cents
    FROM {{tables.invoices}} i
    WHERE i.paid_at IS NULL;
