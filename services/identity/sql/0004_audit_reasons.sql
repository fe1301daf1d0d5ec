-- Why a change was made, when its actor said (an operator's retry or compensation of a saga).
ALTER TABLE audit_events ADD COLUMN reason TEXT NOT NULL DEFAULT '';
