-- An operator's refund of a payment stopped for one: the admin whose approval waits for a second
-- (four eyes), and the one who decided it (its hold is then released, by the request or the worker).
ALTER TABLE payments ADD COLUMN refund_first_approver TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN refund_decided_by TEXT NOT NULL DEFAULT '';
-- How often an operator retried it: its account steps' request ids carry the count (a retry is
-- asked because what refused before has changed; the first key keeps its first answer).
ALTER TABLE payments ADD COLUMN operator_retries INTEGER NOT NULL DEFAULT 0;
-- Bank-wide lists for operators, by status (payments_due leads with it) and by time.
CREATE INDEX payments_created ON payments (created_epoch, seq);
-- The fraud screen's window (a debtor's payments of a currency since a moment) read by its index,
-- whatever the account's history: its cost is the window's, not every payment the debtor made.
CREATE INDEX payments_window ON payments (debtor_account_id, currency, created_epoch);
