-- The repayment schedule, written with the approval (services/lending/schedule.py).
ALTER TABLE loans ADD COLUMN installment_minor BIGINT;
ALTER TABLE loans ADD COLUMN first_due_date TEXT;
CREATE TABLE installments (
    loan_id               TEXT NOT NULL,
    number                INTEGER NOT NULL,
    due_date              TEXT NOT NULL,
    principal_minor       BIGINT NOT NULL CHECK (principal_minor >= 0),
    interest_minor        BIGINT NOT NULL CHECK (interest_minor >= 0),
    principal_after_minor BIGINT NOT NULL CHECK (principal_after_minor >= 0),
    PRIMARY KEY (loan_id, number)
);
