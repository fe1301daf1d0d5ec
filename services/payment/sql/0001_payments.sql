CREATE TABLE payments (
    seq                    {serial_pk},
    payment_id             TEXT NOT NULL UNIQUE,
    debtor_account_id      TEXT NOT NULL,
    beneficiary_account_id TEXT NOT NULL,
    beneficiary_iban       TEXT NOT NULL,
    beneficiary_name       TEXT NOT NULL,
    amount_minor           BIGINT NOT NULL CHECK (amount_minor > 0),
    currency               TEXT NOT NULL,
    reference              TEXT NOT NULL,
    status                 TEXT NOT NULL,
    failure_reason         TEXT NOT NULL,
    hold_id                TEXT NOT NULL,
    transfer_id            TEXT NOT NULL,
    created_epoch          DOUBLE PRECISION NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
CREATE INDEX payments_debtor ON payments (debtor_account_id, seq);
CREATE INDEX payments_due ON payments (status, seq);
