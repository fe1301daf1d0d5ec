-- A hold records who placed it: the context that placed it for a user ("payment", "lending";
-- only that context may capture or release it) and the authority it acted on (placed_by). Holds
-- get a sequence so that an account's holds can be listed page by page.
CREATE TABLE holds_v2 (
    seq               {serial_pk},
    hold_id           TEXT NOT NULL UNIQUE,
    debit_account_id  TEXT NOT NULL REFERENCES accounts (account_id),
    credit_account_id TEXT NOT NULL REFERENCES accounts (account_id),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL,
    description       TEXT NOT NULL,
    captured_minor    BIGINT,
    transfer_id       TEXT,
    placed_at         TEXT NOT NULL,
    owner_context     TEXT NOT NULL DEFAULT '',
    placed_by         TEXT NOT NULL DEFAULT ''
);
INSERT INTO holds_v2 (hold_id, debit_account_id, credit_account_id, amount_minor, currency, status, description,
                      captured_minor, transfer_id, placed_at)
    SELECT hold_id, debit_account_id, credit_account_id, amount_minor, currency, status, description,
           captured_minor, transfer_id, placed_at FROM holds ORDER BY placed_at, hold_id;
DROP TABLE holds;
ALTER TABLE holds_v2 RENAME TO holds;
CREATE INDEX holds_debit ON holds (debit_account_id, seq);
