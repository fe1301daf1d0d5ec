-- A key whose request was refused for the state it met (funds short, a loan no longer owing, ...)
-- keeps the refusal: the request_id answers it for good, so that a concurrent or later identical
-- request cannot succeed where the first was refused (every answer to one request_id the same).
ALTER TABLE idempotency_keys ADD COLUMN refusal TEXT;
