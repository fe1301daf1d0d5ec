-- A day's accrual is recorded per chunk (the range of accounts it covered, zero-interest accounts
-- included) instead of per account: one row per chunk instead of one per account. Runs so far
-- went from the first account on, so each date's postings become one chunk from the start.
CREATE TABLE interest_chunks (
    business_date    TEXT NOT NULL,
    after_account_id TEXT NOT NULL,
    last_account_id  TEXT NOT NULL,
    processed        BIGINT NOT NULL,
    posted_minor     BIGINT NOT NULL,
    PRIMARY KEY (business_date, after_account_id)
);
INSERT INTO interest_chunks (business_date, after_account_id, last_account_id, processed, posted_minor)
    SELECT business_date, '', MAX(account_id), COUNT(*), SUM(amount_minor) FROM interest_postings GROUP BY business_date;
DROP TABLE interest_postings;
-- Only reversals need the uniqueness; indexing every other transfer's NULL cost each insert.
DROP INDEX transfers_reversal;
CREATE UNIQUE INDEX transfers_reversal ON transfers (reverses_transfer_id) WHERE reverses_transfer_id IS NOT NULL;
