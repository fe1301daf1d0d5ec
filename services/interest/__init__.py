"""Interest context: the daily interest accrual, run as a restartable batch per business date."""
