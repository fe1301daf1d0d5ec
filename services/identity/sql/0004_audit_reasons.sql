-- Why a person acted, in their words: an operator's retry, refund, compensation, replay or drop
-- of stuck work is recorded with the reason they gave.
ALTER TABLE audit_events ADD COLUMN reason TEXT NOT NULL DEFAULT '';
