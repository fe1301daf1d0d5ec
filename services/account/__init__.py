"""Account context: accounts, the double-entry ledger, holds and statements."""
