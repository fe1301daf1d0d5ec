-- Idempotency keys belong to the principal that used them (a user, or a context acting as
-- itself): the same request_id from two callers is two keys, and a replayed answer goes only to
-- the principal who made the first request. Keys recorded before this change had no principal;
-- they keep the scope 'legacy', which no caller has, so they are never replayed to anyone.
CREATE TABLE idempotency_keys_scoped (
    scope       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (scope, request_id)
);
INSERT INTO idempotency_keys_scoped (scope, request_id, operation, fingerprint, resource_id)
    SELECT 'legacy', request_id, operation, fingerprint, resource_id FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_scoped RENAME TO idempotency_keys;
