CREATE TABLE loans (
    seq            {serial_pk},
    loan_id        TEXT NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    principal_minor BIGINT NOT NULL CHECK (principal_minor > 0),
    currency       TEXT NOT NULL,
    term_months    INTEGER NOT NULL,
    annual_rate    TEXT NOT NULL,
    status         TEXT NOT NULL,
    saga_id        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX loans_customer ON loans (customer_id, seq);
CREATE TABLE disbursements (
    disbursement_id TEXT PRIMARY KEY,
    loan_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
