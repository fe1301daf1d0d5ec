ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN updated_at TEXT;
CREATE INDEX users_revoked ON users (updated_at) WHERE token_generation > 0 OR disabled = 1;
CREATE TABLE known_customers (
    customer_id TEXT PRIMARY KEY
);
CREATE TABLE audit_events (
    seq            {serial_pk},
    audit_event_id TEXT NOT NULL UNIQUE,
    recorded_at    TEXT NOT NULL,
    context        TEXT NOT NULL,
    operation      TEXT NOT NULL,
    resource       TEXT NOT NULL,
    actor          TEXT NOT NULL,
    on_behalf_of   TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    service        TEXT NOT NULL
);
CREATE INDEX audit_by_actor ON audit_events (actor, seq);
CREATE INDEX audit_by_resource ON audit_events (resource, seq);
CREATE INDEX audit_by_time ON audit_events (recorded_at);
