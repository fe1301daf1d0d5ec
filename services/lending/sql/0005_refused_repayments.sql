-- A repayment the account refused to pay (funds short, account closed) stays, REJECTED, with the
-- refusal: its request_id answers that refusal for good (a retry never takes the money later).
ALTER TABLE repayments ADD COLUMN refusal TEXT;
