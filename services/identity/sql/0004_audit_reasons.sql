-- The reason a person gave for a change that asks for one (an operator's replay or drop of a dead
-- letter), as og.audit.v1.ChangeRecorded carries it; empty for every other change.
ALTER TABLE audit_events ADD COLUMN reason TEXT NOT NULL DEFAULT '';
