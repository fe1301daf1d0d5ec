-- One row per source event: the event id is the notification's idempotency key (a redelivered
-- event finds its row and sends nothing more).
CREATE TABLE notifications (
    seq             {serial_pk},
    notification_id TEXT NOT NULL UNIQUE,
    customer_id     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    source_event_id TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    failure_reason  TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    due_epoch       DOUBLE PRECISION
);
CREATE INDEX notifications_customer ON notifications (customer_id, seq);
CREATE INDEX notifications_due ON notifications (status, due_epoch);

CREATE TABLE notification_preferences (
    customer_id TEXT PRIMARY KEY,
    opted_out   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
