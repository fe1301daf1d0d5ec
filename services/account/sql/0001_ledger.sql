CREATE TABLE accounts (
    seq             {serial_pk},
    account_id      TEXT NOT NULL UNIQUE,
    customer_id     TEXT NOT NULL,
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    currency        TEXT NOT NULL,
    features_json   TEXT NOT NULL,
    balance_minor   BIGINT NOT NULL DEFAULT 0,
    held_minor      BIGINT NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    floor_minor     BIGINT,
    opened_at       TEXT NOT NULL,
    closed_at       TEXT,
    CHECK (floor_minor IS NULL OR balance_minor - held_minor >= floor_minor)
);
CREATE INDEX accounts_customer ON accounts (customer_id, seq);
CREATE TABLE transfers (
    seq                  {serial_pk},
    transfer_id          TEXT NOT NULL UNIQUE,
    debit_account_id     TEXT NOT NULL REFERENCES accounts (account_id),
    credit_account_id    TEXT NOT NULL REFERENCES accounts (account_id),
    amount_minor         BIGINT NOT NULL CHECK (amount_minor > 0),
    currency             TEXT NOT NULL,
    description          TEXT NOT NULL,
    reverses_transfer_id TEXT,
    reversed_by          TEXT,
    hold_id              TEXT,
    posted_at            TEXT NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE UNIQUE INDEX transfers_reversal ON transfers (reverses_transfer_id);
CREATE TABLE entries (
    seq                     {serial_pk},
    account_id              TEXT NOT NULL REFERENCES accounts (account_id),
    transfer_id             TEXT NOT NULL REFERENCES transfers (transfer_id),
    amount_minor            BIGINT NOT NULL,
    balance_after_minor     BIGINT NOT NULL,
    counterparty_account_id TEXT NOT NULL,
    description             TEXT NOT NULL,
    posted_at               TEXT NOT NULL
);
CREATE INDEX entries_account ON entries (account_id, seq);
CREATE TABLE holds (
    hold_id           TEXT PRIMARY KEY,
    debit_account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    credit_account_id TEXT NOT NULL REFERENCES accounts (account_id),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    description       TEXT NOT NULL,
    captured_minor    BIGINT,
    transfer_id       TEXT,
    placed_at         TEXT NOT NULL
);
