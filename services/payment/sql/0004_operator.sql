-- An operator's refund of a payment stopped for one: the admin whose approval waits for a second
-- (four eyes), and the one who decided it (its hold is then released, by the request or the worker).
ALTER TABLE payments ADD COLUMN refund_first_approver TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN refund_decided_by TEXT NOT NULL DEFAULT '';
-- Bank-wide lists for operators, by status (payments_due leads with it) and by time.
CREATE INDEX payments_created ON payments (created_epoch, seq);
