-- Charges (PostCharges): a customer's account debited for one or more of the bank's accounts.
CREATE TABLE charges (
    charge_id    TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts (account_id),
    total_minor  BIGINT NOT NULL CHECK (total_minor > 0),
    currency     TEXT NOT NULL,
    transfer_ids TEXT NOT NULL,
    posted_at    TEXT NOT NULL
);
