-- What a statement says beyond accounts and amounts (narrative.py): the party outside the bank
-- and the request's reference, as the hold or order carried them, kept on the hold until its
-- capture, on the transfer (a reversal carries them back) and per entry (each side shows what
-- its account's holder is told). Earlier rows have none.
ALTER TABLE holds ADD COLUMN counterparty_name TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN counterparty_iban TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN reference TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN counterparty_name TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN counterparty_iban TEXT NOT NULL DEFAULT '';
ALTER TABLE transfers ADD COLUMN reference TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN counterparty_name TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN counterparty_iban TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN reference TEXT NOT NULL DEFAULT '';
