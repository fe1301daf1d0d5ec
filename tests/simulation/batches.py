"""Interest and fees at most once: read from the account context's ledger and chunk records at
quiescence, whatever batch runs raced (identical copies, rival requests for the same day or
month, direct AccrueInterest and ChargeMonthlyFees calls meanwhile)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from common.config import Settings

Query = Callable[[Settings, str, str], Awaitable[list[tuple[Any, ...]]]]

# (what, SQL of the rows breaking it) on the account context's tables.
ONCE = {
    "interest paid twice to an account for a day": (
        "SELECT credit_account_id, description, COUNT(*) FROM {account}transfers"
        " WHERE debit_account_id LIKE 'acc_INTEREST_EXPENSE_%' AND description LIKE 'interest %'"
        " AND reverses_transfer_id IS NULL GROUP BY credit_account_id, description HAVING COUNT(*) > 1"
    ),
    "a fee charged twice to an account for a month": (
        "SELECT debit_account_id, description, COUNT(*) FROM {account}transfers"
        " WHERE credit_account_id LIKE 'acc_FEE_INCOME_%' AND description LIKE 'monthly fee %'"
        " AND reverses_transfer_id IS NULL GROUP BY debit_account_id, description HAVING COUNT(*) > 1"
    ),
    "a day's interest differing from its recorded chunks": (
        "SELECT c.business_date, c.posted, t.paid FROM"
        " (SELECT business_date, SUM(posted_minor) AS posted FROM {account}interest_chunks GROUP BY business_date) c"
        " FULL OUTER JOIN (SELECT substr(description, 10) AS business_date, SUM(amount_minor) AS paid FROM {account}transfers"
        " WHERE debit_account_id LIKE 'acc_INTEREST_EXPENSE_%' AND description LIKE 'interest %'"
        " GROUP BY substr(description, 10)) t ON t.business_date = c.business_date"
        " WHERE COALESCE(c.posted, 0) != COALESCE(t.paid, 0)"
    ),
    "a month's fees differing from its recorded chunks": (
        "SELECT c.month, c.charged, t.paid FROM"
        " (SELECT month, SUM(charged_minor) AS charged FROM {account}fee_chunks GROUP BY month) c"
        " FULL OUTER JOIN (SELECT substr(description, 13) AS month, SUM(amount_minor) AS paid FROM {account}transfers"
        " WHERE credit_account_id LIKE 'acc_FEE_INCOME_%' AND description LIKE 'monthly fee %'"
        " GROUP BY substr(description, 13)) t ON t.month = c.month"
        " WHERE COALESCE(c.charged, 0) != COALESCE(t.paid, 0)"
    ),
    "a day's interest chunks overlapping": (
        "SELECT a.business_date, a.after_account_id, b.after_account_id FROM {account}interest_chunks a"
        " JOIN {account}interest_chunks b ON a.business_date = b.business_date AND a.after_account_id < b.after_account_id"
        " AND b.after_account_id < a.last_account_id"
    ),
}


async def interest_and_fees_once(query: Query, settings: Settings) -> list[str]:
    """Each account paid a day's interest once and charged a month's fee once; each day's and
    month's postings are exactly what its chunks recorded, and a day's chunks never overlap."""
    broken = []
    for what, sql in ONCE.items():
        broken += [f"{what}: {row}" for row in await query(settings, "account", sql)]
    return broken
