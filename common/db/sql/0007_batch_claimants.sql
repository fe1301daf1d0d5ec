-- The request that started a run: the same request asked again answers with the run, not a refusal.
ALTER TABLE batch_runs ADD COLUMN claimant TEXT NOT NULL DEFAULT '';
