"""A month's maintenance fees, set-based: each chunk of accounts is charged in a fixed number of
statements whatever its size, and recorded, so a chunk asked for again answers from its record.

`fee_due` (the domain's rule) becomes the selection of the accounts a fee is due for; the postings
themselves share bulk_postings.post_rows with interest.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, replace
from datetime import date, datetime

from common.audit import record_change
from common.db.base import Tx, aggregate
from services.account.bulk_postings import ROWS_DDL, day_end, post_rows
from services.account.domain import InternalAccount


class ChunkOverlap(Exception):
    """A cursor inside a chunk of fees recorded whole: the use case answers the domain's refusal."""

    def __init__(self, start: str, last: str) -> None:
        super().__init__(start, last)
        self.start, self.last = start, last


@dataclass(frozen=True)
class FeeChunk:
    processed: int  # accounts with a fee examined in the chunk
    charged: int
    charged_minor: int
    unpaid: int  # due, but the account could not cover it within its floor: not charged
    last_account_id: str
    done: bool


# The features are stored as JSON with each account (what its product offered when it opened).
_FEATURE = {
    "sqlite": "CAST(json_extract(a.features_json, '$.{name}') AS INTEGER)",
    "postgres": "CAST(a.features_json::jsonb ->> '{name}' AS BIGINT)",
}
_WITH_FEE = "a.type <> 'INTERNAL' AND a.status = 'OPEN' AND a.currency = ? AND a.opened_at < ? AND {fee} > 0"


@dataclass(frozen=True)
class _Month:
    """A calendar month, as the text bounds that posted_at and opened_at compare with."""

    first_day: date

    @property
    def start(self) -> str:
        return f"{self.first_day}T00:00:00+00:00"

    @property
    def end(self) -> str:
        last = monthrange(self.first_day.year, self.first_day.month)[1]
        return day_end(self.first_day.replace(day=last).isoformat())

    @property
    def key(self) -> str:
        return f"{self.first_day.year:04d}-{self.first_day.month:02d}"  # strftime's %Y drops the zeros of year 1


def _due_rows_sql(dialect: str, month: _Month) -> str:
    """The accounts of a span whose fee is due, with what they can pay: fee_due (domain) in SQL."""
    fee, minimum = (_FEATURE[dialect].format(name=n) for n in ("monthly_fee", "minimum_balance"))
    lowest = "CASE WHEN low IS NULL THEN COALESCE(carried, 0) WHEN carried IS NULL OR low < carried THEN low ELSE carried END"
    return (
        f"SELECT account_id, 'trf_FEE' || '{month.key.replace('-', '')}' || substr(account_id, 5) AS transfer_id, fee,"
        " (floor_minor IS NULL OR balance_minor - held_minor - fee >= floor_minor) AS covered FROM ("
        f"SELECT a.account_id, a.balance_minor, a.held_minor, a.floor_minor, {fee} AS fee, {minimum} AS minimum,"
        " (SELECT MIN(e.balance_after_minor) FROM entries e WHERE e.account_id = a.account_id AND e.posted_at >= ?"
        " AND e.posted_at < ?) AS low,"
        " CASE WHEN a.opened_at < ? THEN COALESCE((SELECT e.balance_after_minor FROM entries e WHERE e.account_id = a.account_id"
        " AND e.posted_at < ? ORDER BY e.seq DESC LIMIT 1), 0) END AS carried"
        f" FROM accounts a WHERE {_WITH_FEE.format(fee=fee)} AND a.account_id > ? AND a.account_id <= ?) x"
        f" WHERE {lowest} < minimum"
    )


async def charge_fees(tx: Tx, first_day: date, currency: str, after: str, limit: int, at: datetime) -> FeeChunk:
    """One chunk of a month's fees: recorded once, answered from the record when asked again."""
    month = _Month(first_day)
    recorded = await _recorded_fee_chunk(tx, month, currency, after)
    if recorded is not None:  # "done" as it was when first charged, unless accounts with a fee came since
        following, _ = await _fee_chunk_edge(tx, month, currency, recorded.last_account_id, 1)
        return replace(recorded, done=recorded.processed < limit and not following)
    ceiling = await _next_fee_chunk_start(tx, month, currency, after)
    count, last = await _fee_chunk_edge(tx, month, currency, after, limit, ceiling)
    if not count:
        return FeeChunk(0, 0, 0, 0, ceiling or after, not ceiling)
    await tx.execute(ROWS_DDL[tx.dialect])
    await tx.execute("DELETE FROM accrual_rows")
    due = await tx.fetchall(
        _due_rows_sql(tx.dialect, month), month.start, month.end, month.start, month.start, currency, month.end, after, last
    )
    payable = [(r["account_id"], r["transfer_id"], r["fee"]) for r in due if r["covered"]]
    total = sum(int(r[2]) for r in payable)
    if payable:
        await tx.executemany("INSERT INTO accrual_rows (account_id, transfer_id, amount_minor) VALUES (?, ?, ?)", payable)
        await post_rows(
            tx, InternalAccount.FEE_INCOME.account_id(currency), currency, total, f"monthly fee {month.key}", at, to_rows=False
        )
    chunk = FeeChunk(count, len(payable), total, len(due) - len(payable), last, count < limit and not ceiling)
    await record_change(tx, "ChargeMonthlyFees", f"fees/{month.key}/{currency}/{after}..{last}")
    await _record_fee_chunk(tx, month, currency, after, chunk)
    return chunk


async def _recorded_fee_chunk(tx: Tx, month: _Month, currency: str, after: str) -> FeeChunk | None:
    """The chunk recorded from `after`, if any. A cursor inside a recorded chunk is refused: what
    that chunk charged after the cursor is not recorded apart, and charging it again would take a
    second fee (the batch runner's and the CLI's cursors are always a chunk's start or end)."""
    recorded = await tx.fetchone(
        "SELECT after_account_id, last_account_id, processed, charged, charged_minor, unpaid FROM fee_chunks"
        " WHERE month = ? AND currency = ? AND after_account_id <= ? AND last_account_id > ?"
        " ORDER BY after_account_id DESC LIMIT 1",  # the chunk from `after` itself first, should two overlap
        month.key,
        currency,
        after,
        after,
    )
    if recorded is None:
        return None
    if recorded["after_account_id"] != after:
        start, last = str(recorded["after_account_id"]), str(recorded["last_account_id"])
        raise ChunkOverlap(start, last)
    return FeeChunk(
        int(recorded["processed"]),
        int(recorded["charged"]),
        int(recorded["charged_minor"]),
        int(recorded["unpaid"]),
        str(recorded["last_account_id"]),
        False,
    )


async def _fee_chunk_edge(tx: Tx, month: _Month, currency: str, after: str, limit: int, ceiling: str = "") -> tuple[int, str]:
    """How many accounts with a fee the chunk after `after` covers (up to `ceiling`, where a
    recorded chunk begins, if given), and the last of them."""
    fee = _FEATURE[tx.dialect].format(name="monthly_fee")
    edge = await aggregate(
        tx,
        f"SELECT MAX(account_id) AS last, COUNT(*) AS n FROM (SELECT a.account_id FROM accounts a WHERE {_WITH_FEE.format(fee=fee)}"
        " AND a.account_id > ? AND (? = '' OR a.account_id <= ?) ORDER BY a.account_id LIMIT ?) chunk",
        currency,
        month.end,
        after,
        ceiling,
        ceiling,
        limit,
    )
    return int(edge["n"]), str(edge["last"] or "")


async def _next_fee_chunk_start(tx: Tx, month: _Month, currency: str, after: str) -> str:
    """Where the next recorded chunk of the month begins ('' if none): a new chunk stops there."""
    row = await aggregate(
        tx,
        "SELECT MIN(after_account_id) AS start FROM fee_chunks WHERE month = ? AND currency = ? AND after_account_id > ?",
        month.key,
        currency,
        after,
    )
    return str(row["start"]) if row["start"] is not None else ""


async def _record_fee_chunk(tx: Tx, month: _Month, currency: str, after: str, chunk: FeeChunk) -> None:
    await tx.execute(
        "INSERT INTO fee_chunks (month, currency, after_account_id, last_account_id, processed, charged, charged_minor, unpaid)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        month.key,
        currency,
        after,
        chunk.last_account_id,
        chunk.processed,
        chunk.charged,
        chunk.charged_minor,
        chunk.unpaid,
    )
