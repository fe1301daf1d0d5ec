ALTER TABLE accounts ADD COLUMN interest_bearing INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET interest_bearing = 1 WHERE features_json LIKE '%"interest_bearing": true%';
CREATE INDEX accounts_interest ON accounts (currency, account_id) WHERE interest_bearing = 1 AND status = 'OPEN';
CREATE TABLE interest_postings (
    account_id    TEXT NOT NULL,
    business_date TEXT NOT NULL,
    transfer_id   TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    PRIMARY KEY (account_id, business_date)
);
