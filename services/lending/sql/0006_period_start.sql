-- The day each installment's period began (services/lending/schedule.py): the previous due date,
-- the first's the day the schedule started. A payoff accrues the current period from it. Schedules
-- written before it was kept get the previous due date; their first installment's stays unknown.
ALTER TABLE installments ADD COLUMN period_start TEXT;
UPDATE installments SET period_start = (
    SELECT earlier.due_date FROM installments earlier
    WHERE earlier.loan_id = installments.loan_id AND earlier.number = installments.number - 1
) WHERE number > 1;
