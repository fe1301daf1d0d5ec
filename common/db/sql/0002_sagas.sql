CREATE TABLE saga_runs (
    saga_id     TEXT PRIMARY KEY,
    saga_type   TEXT NOT NULL,
    status      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX saga_runs_status ON saga_runs (status);
CREATE TABLE saga_steps (
    saga_id     TEXT NOT NULL,
    step_index  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    result      TEXT NOT NULL,
    last_error  TEXT NOT NULL,
    PRIMARY KEY (saga_id, step_index)
);
