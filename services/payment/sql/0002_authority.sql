-- The authority verified when the payment's request was handled (who, through which contexts):
-- background work completes or undoes what it started, never more. Passing failures in the
-- background push a payment's next attempt back instead of blocking the queue.
ALTER TABLE payments ADD COLUMN authorized_by TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN next_attempt_at TEXT NOT NULL DEFAULT '';
DROP INDEX payments_due;
CREATE INDEX payments_due ON payments (status, next_attempt_at, seq);
