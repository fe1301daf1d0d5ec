CREATE TABLE batch_runs (
    job          TEXT NOT NULL,
    run_key      TEXT NOT NULL,
    status       TEXT NOT NULL,
    cursor       TEXT NOT NULL,
    processed    BIGINT NOT NULL,
    errors       BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    started_at   TEXT NOT NULL,
    elapsed_ms   BIGINT NOT NULL,
    PRIMARY KEY (job, run_key)
);
