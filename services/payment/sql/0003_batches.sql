-- Bulk payments: a batch accepted whole; its lines are payments that name it (by batch and line
-- number, once each), so every line is an ordinary payment that the workers complete. A batch
-- keeps one state of its own: refused whole (its failure_reason), else it is counted from its lines.
CREATE TABLE payment_batches (
    seq               {serial_pk},
    batch_id          TEXT NOT NULL UNIQUE,
    debtor_account_id TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    line_count        INTEGER NOT NULL,
    total_minor       BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    failure_reason    TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    authorized_by     TEXT NOT NULL
);
ALTER TABLE payments ADD COLUMN batch_id TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN batch_line INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN end_to_end_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX payments_batch_line ON payments (batch_id, batch_line) WHERE batch_id <> '';
