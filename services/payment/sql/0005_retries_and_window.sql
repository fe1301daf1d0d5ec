-- How often an operator retried it: its account steps' request ids carry the count (a retry is
-- asked because what refused before has changed; the first key keeps its first answer).
ALTER TABLE payments ADD COLUMN operator_retries INTEGER NOT NULL DEFAULT 0;
-- The fraud screen's window (a debtor's payments of a currency since a moment) read by its index,
-- whatever the account's history: its cost is the window's, not every payment the debtor made.
CREATE INDEX payments_window ON payments (debtor_account_id, currency, created_epoch);
