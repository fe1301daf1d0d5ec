-- Events this context's consumer gave up on after its retries, kept beside its inbox so that they
-- survive a restart (the publisher's outbox marked them published already) and an operator can
-- list, replay or drop them (og.operations.v1.DeadLetterService). At most one letter of an event
-- waits at a time: a dead-lettering repeated after a crash (before the bus acknowledged it) adds
-- nothing; once replayed, a new failure of the same event is a new letter.
CREATE TABLE dead_letters (
    dead_letter_id TEXT PRIMARY KEY,
    consumer       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    payload        {bytes} NOT NULL,
    headers        TEXT NOT NULL,
    occurred_at    TEXT NOT NULL,
    error          TEXT NOT NULL,
    dead_at        TEXT NOT NULL,
    state          TEXT NOT NULL,
    acted_at       TEXT,
    actor          TEXT NOT NULL DEFAULT '',
    reason         TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX dead_letters_waiting ON dead_letters (consumer, event_id) WHERE state = 'WAITING';
CREATE INDEX dead_letters_by_state ON dead_letters (state, dead_letter_id);
