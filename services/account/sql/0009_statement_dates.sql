-- Statements by date (GetStatement): an account's last entry before an instant, found in the
-- index instead of by reading every entry of the account (the bank's own accounts have many).
CREATE INDEX entries_account_posted ON entries (account_id, posted_at, seq);
