-- Which process drives a saga, until when: replicas of a context never drive one saga together,
-- and a saga whose driver died is taken over once its lease has run out.
ALTER TABLE saga_runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE saga_runs ADD COLUMN lease_until DOUBLE PRECISION NOT NULL DEFAULT 0;
