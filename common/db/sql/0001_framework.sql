CREATE TABLE idempotency_keys (
    request_id  TEXT PRIMARY KEY,
    operation   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT NOT NULL
);
CREATE TABLE outbox (
    seq          {serial_pk},
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      {bytes} NOT NULL,
    headers      TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE TABLE inbox (
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
