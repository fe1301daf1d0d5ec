"""Statements and the trial balance in SQL: reads only, over one transaction.

A statement's range of dates becomes a range of entry sequence numbers, read once: the entries
of the range are those after the last entry posted before its first day and up to the last
posted before the end of its last day, so the opening balance plus the range's entries is the
closing balance exactly, whatever page is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.db.base import Row, Tx, aggregate
from common.db.keyset import Page, keyset_page
from services.account.domain import AccountStatus, AccountType, Entry
from services.account.postings import ENTRY_SELECT, entry_of


@dataclass(frozen=True)
class StatementRange:
    """The entries of one account between two instants, as sequence numbers (first exclusive,
    last inclusive), with the balances at both ends and the range's sums (minor units)."""

    after_seq: int
    last_seq: int
    opening_minor: int
    closing_minor: int
    credits_minor: int
    debits_minor: int
    count: int


@dataclass(frozen=True)
class TrialLine:
    """One account of a trial balance."""

    account_id: str
    customer_id: str
    type: AccountType
    status: AccountStatus
    balance_minor: int


@dataclass(frozen=True)
class TrialTotals:
    """Sums over every account of a currency (minor units)."""

    count: int
    credit_balances_minor: int
    debit_balances_minor: int
    net_minor: int


class Statements:
    """Reads of statements and trial balances."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def statement(
        self, account_id: str, start: str, end: str, page: tuple[int, int], newest_first: bool
    ) -> tuple[StatementRange, Page[Entry, int]]:
        """The range from `start` to `end` and one page of its entries (after, limit)."""
        within = await self.range(account_id, start, end)
        return within, await self.entries(account_id, within, *page, newest_first=newest_first)

    async def trial_balance(self, currency: str, after: str, limit: int) -> tuple[Page[TrialLine, str], TrialTotals]:
        return await self.trial_lines(currency, after, limit), await self.trial_totals(currency)

    async def range(self, account_id: str, start: str, end: str) -> StatementRange:
        """The entries posted at or after `start` and before `end` (ISO 8601 texts, compared as
        posted_at is stored)."""
        lo, opening = await self._last_before(account_id, start)
        hi, closing = await self._last_before(account_id, end)
        if hi < lo:  # posted in another order than sequenced, across the range's start: an empty range
            hi, closing = lo, opening
        sums = await aggregate(
            self._tx,
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END), 0) AS credits,"
            " COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END), 0) AS debits"
            " FROM entries WHERE account_id = ? AND seq > ? AND seq <= ?",
            account_id,
            lo,
            hi,
        )
        return StatementRange(lo, hi, opening, closing, int(sums["credits"]), int(sums["debits"]), int(sums["n"]))

    async def _last_before(self, account_id: str, instant: str) -> tuple[int, int]:
        """(seq, balance after it) of the account's last entry posted before `instant`; (0, 0)
        when none (index entries_account_posted)."""
        row = await self._tx.fetchone(
            "SELECT seq, balance_after_minor FROM entries WHERE account_id = ? AND posted_at < ?"
            " ORDER BY posted_at DESC, seq DESC LIMIT 1",
            account_id,
            instant,
        )
        return (int(row["seq"]), int(row["balance_after_minor"])) if row else (0, 0)

    async def entries(
        self, account_id: str, within: StatementRange, after: int, limit: int, *, newest_first: bool
    ) -> Page[Entry, int]:
        """One page of the range's entries, oldest or newest first, after the position `after`."""
        where = "e.account_id = ? AND e.seq > ? AND e.seq <= ?"
        params = [account_id, within.after_seq, within.last_seq]
        return await keyset_page(
            self._tx, ENTRY_SELECT, where, params, after, limit, entry_of, key="e.seq", descending=newest_first
        )

    async def trial_lines(self, currency: str, after: str, limit: int) -> Page[TrialLine, str]:
        select = "SELECT account_id, customer_id, type, status, balance_minor FROM accounts"
        return await keyset_page(self._tx, select, "currency = ?", [currency], after, limit, _line, key="account_id")

    async def trial_totals(self, currency: str) -> TrialTotals:
        row = await aggregate(
            self._tx,
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN balance_minor > 0 THEN balance_minor ELSE 0 END), 0) AS credits,"
            " COALESCE(SUM(CASE WHEN balance_minor < 0 THEN -balance_minor ELSE 0 END), 0) AS debits,"
            " COALESCE(SUM(balance_minor), 0) AS net FROM accounts WHERE currency = ?",
            currency,
        )
        return TrialTotals(int(row["n"]), int(row["credits"]), int(row["debits"]), int(row["net"]))


def _line(row: Row) -> TrialLine:
    return TrialLine(
        row["account_id"], row["customer_id"], AccountType(row["type"]), AccountStatus(row["status"]), int(row["balance_minor"])
    )
