-- Servicing (services/lending/servicing.py): what is paid, charged and waived on each
-- installment, and the repayments that paid it.
ALTER TABLE installments ADD COLUMN penalty_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installments ADD COLUMN paid_penalty_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installments ADD COLUMN paid_interest_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installments ADD COLUMN paid_principal_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installments ADD COLUMN waived_interest_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installments ADD COLUMN overdue_since TEXT;
CREATE TABLE repayments (
    seq          {serial_pk},
    repayment_id TEXT NOT NULL UNIQUE,
    loan_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     TEXT NOT NULL,
    parts_json   TEXT NOT NULL,
    scope        TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    operation    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    posted_at    TEXT,
    UNIQUE (scope, request_id)
);
CREATE INDEX repayments_loan ON repayments (loan_id, seq);
CREATE INDEX repayments_pending ON repayments (status, created_at);
CREATE INDEX loans_status ON loans (currency, status, seq);
