"""The ledger's set-based postings: a day's interest (here) and a month's maintenance fees
(bulk_fees.py), each a chunk of accounts posted in a fixed number of statements whatever its size.

The interest context owns the policy (which day, which tiers); the arithmetic runs here, where
the balances are: `interest_sql` is `kernel.interest.daily_interest` as one integer SQL expression, and
`fee_due` becomes the selection of the accounts a fee is due for. Each chunk is recorded, so a
chunk asked for again (a run resumed) answers from its record and posts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.audit import acting, record_change
from common.db.base import Tx, aggregate
from common.errors import Aborted
from common.money import MAX_MINOR
from kernel.interest import InterestTier
from services.account.domain import InternalAccount
from services.account.tables import ENTRY_COLUMNS, TRANSFER_COLUMNS


class PastLimit(Exception):
    """A set-based posting found an account it would take past the ledger's limit: the chunk is
    undone whole (posting the others and skipping one would pay unevenly without anyone
    noticing), and the use case answers the domain's refusal for that account."""

    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id


@dataclass(frozen=True)
class AccrualChunk:
    processed: int
    posted_minor: int
    last_account_id: str
    done: bool
    eligible: int


PPM = 1_000_000


def interest_sql(tiers: tuple[InterestTier, ...], balance: str = "balance_minor") -> str:
    """kernel.interest.daily_interest as one integer SQL expression, for set-based posting.

    The rate is chosen by the tiers (rates in parts per million), and balance * rate / 365 is
    rounded half-even with integer arithmetic, so SQLite and PostgreSQL agree with the Decimal
    reference exactly (tests/unit/test_interest_rules.py cross-checks them). No intermediate
    leaves 64 bits for any balance up to MAX_MINOR and any rate below 1: the balance is split as
    hi * 10^6 + lo, so that balance * rate = (hi * rate) * 10^6 + lo * rate, and
    hi * rate = 365 * qa + ra gives balance * rate = qa * (365 * 10^6) + (ra * 10^6 + lo * rate),
    where every product stays below 10^16. (A plain balance * rate overflows: SQLite would turn
    it into a float, PostgreSQL would fail.)
    """
    cases = " ".join(
        f"WHEN {balance} <= {t.up_to_minor} THEN {int(t.annual_rate * PPM)}" for t in tiers if t.up_to_minor is not None
    )
    last = int(tiers[-1].annual_rate * PPM)
    rate = f"(CASE {cases} ELSE {last} END)" if cases else str(last)
    den = 365 * PPM
    hi, lo = f"({balance} / {PPM})", f"({balance} - ({balance} / {PPM}) * {PPM})"
    high = f"({hi} * {rate})"
    qa, ra = f"({high} / 365)", f"({high} - ({high} / 365) * 365)"
    rest = f"({ra} * {PPM} + {lo} * {rate})"
    # Remainders as a - (a / b) * b: no '%' (a placeholder to psycopg), integer division on both engines.
    quotient = f"({qa} + {rest} / {den})"
    remainder = f"({rest} - ({rest} / {den}) * {den})"
    parity = f"({quotient} - ({quotient} / 2) * 2)"
    return (
        f"(CASE WHEN {balance} <= 0 THEN 0 ELSE {quotient} + CASE WHEN 2 * {remainder} > {den} THEN 1"
        f" WHEN 2 * {remainder} = {den} THEN {parity} ELSE 0 END END)"
    )


# Interest of a business date goes to the interest-bearing open accounts of the currency that were
# opened on or before that date (an account opened today earns nothing for last June): the two
# parameters are the currency and the first instant after the date (opened_at is ISO text in UTC).
_ELIGIBLE = "interest_bearing = 1 AND status = 'OPEN' AND currency = ? AND opened_at < ?"


def day_end(business_date: str) -> str:
    """The end of a day as ISO 8601 writes it (24:00): after every instant of the day and before
    the next one, as text too, with no date arithmetic (9999-12-31 has no day after)."""
    return f"{business_date}T24:00:00+00:00"


# The chunk's postings, computed once and read by every statement after it: a table private to
# the connection on both engines, emptied before every chunk.
ROWS_DDL = {
    "sqlite": "CREATE TEMP TABLE IF NOT EXISTS accrual_rows (account_id TEXT PRIMARY KEY, transfer_id TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL)",
    "postgres": "CREATE TEMP TABLE IF NOT EXISTS accrual_rows (account_id TEXT PRIMARY KEY, transfer_id TEXT NOT NULL,"
    " amount_minor BIGINT NOT NULL) ON COMMIT DELETE ROWS",
}


@dataclass(frozen=True)
class _Span:
    """The eligible accounts with after < account_id <= last, for one business date."""

    business_date: str
    currency: str
    after: str
    last: str

    def transfer_id_sql(self, account_id: str = "account_id") -> str:
        """The deterministic transfer id of an account's interest for the date: a second posting collides."""
        return f"'trf_INT' || '{self.business_date.replace('-', '')}' || substr({account_id}, 5)"


async def accrue_interest(
    tx: Tx, business_date: str, currency: str, tiers: tuple[InterestTier, ...], after: str, limit: int, at: datetime
) -> AccrualChunk:
    """One chunk of the day's accrual, in a fixed number of set-based statements whatever its
    size. A posted chunk is recorded as the range (after, last] it covered, zero-interest accounts
    included, so a chunk asked for again (a run resumed) answers from that record and posts
    nothing; the deterministic transfer id per (account, date) is the last guard."""
    eligible = await _count_eligible(tx, currency, business_date) if not after else 0
    recorded = await _recorded_chunk(tx, business_date, currency, after)
    if recorded is not None:
        done = recorded.processed < limit and not await _eligible_after(tx, currency, business_date, recorded.last_account_id)
        return AccrualChunk(recorded.processed, recorded.posted_minor, recorded.last_account_id, done, eligible)
    ceiling = await _next_recorded_start(tx, business_date, after)
    edge = await aggregate(
        tx,
        f"SELECT MAX(account_id) AS last, COUNT(*) AS n FROM (SELECT account_id FROM accounts WHERE {_ELIGIBLE}"
        " AND account_id > ? AND (? = '' OR account_id <= ?) ORDER BY account_id LIMIT ?) chunk",
        currency,
        day_end(business_date),
        after,
        ceiling,
        ceiling,
        limit,
    )
    count = int(edge["n"])
    if not count:
        return AccrualChunk(0, 0, ceiling or after, not ceiling, eligible)
    span = _Span(business_date, currency, after, str(edge["last"]))
    posted = await _post_span(tx, span, tiers, at)
    await record_change(tx, "AccrueInterest", f"interest/{business_date}/{currency}/{after}..{span.last}")
    await tx.execute(
        "INSERT INTO interest_chunks (business_date, after_account_id, last_account_id, processed, posted_minor)"
        " VALUES (?, ?, ?, ?, ?)",
        business_date,
        after,
        span.last,
        count,
        posted,
    )
    return AccrualChunk(count, posted, span.last, count < limit and not ceiling, eligible)


async def _eligible_after(tx: Tx, currency: str, business_date: str, last: str) -> bool:
    """Whether an account after `last` earns the day's interest: a chunk asked again is "done" as
    it was when first posted, unless accounts came since."""
    after = await tx.fetchone(
        f"SELECT account_id FROM accounts WHERE {_ELIGIBLE} AND account_id > ? LIMIT 1", currency, day_end(business_date), last
    )
    return after is not None


async def _count_eligible(tx: Tx, currency: str, business_date: str) -> int:
    counted = await aggregate(tx, f"SELECT COUNT(*) AS n FROM accounts WHERE {_ELIGIBLE}", currency, day_end(business_date))
    return int(counted["n"])


async def _recorded_chunk(tx: Tx, business_date: str, currency: str, after: str) -> AccrualChunk | None:
    """The recorded chunk that covers the account after `after`, if any, as done from `after` on."""
    row = await tx.fetchone(
        "SELECT after_account_id, last_account_id, processed, posted_minor FROM interest_chunks"
        " WHERE business_date = ? AND after_account_id <= ? AND last_account_id > ?",
        business_date,
        after,
        after,
    )
    if row is None:
        return None
    if row["after_account_id"] == after:
        return AccrualChunk(int(row["processed"]), int(row["posted_minor"]), str(row["last_account_id"]), False, 0)
    # A cursor inside a recorded chunk (the batch runner's never is): count what is done after it.
    span = _Span(business_date, currency, after, str(row["last_account_id"]))
    done = await aggregate(
        tx,
        f"SELECT COUNT(*) AS n, COALESCE(SUM(t.amount_minor), 0) AS posted FROM accounts a LEFT JOIN transfers t"
        f" ON t.transfer_id = {span.transfer_id_sql('a.account_id')} WHERE a.{_ELIGIBLE.replace(' AND ', ' AND a.')}"
        " AND a.account_id > ? AND a.account_id <= ?",
        currency,
        day_end(business_date),
        after,
        span.last,
    )
    return AccrualChunk(int(done["n"]), int(done["posted"]), span.last, False, 0)


async def _next_recorded_start(tx: Tx, business_date: str, after: str) -> str:
    """Where the next recorded chunk begins ('' if none): a new chunk must stop there."""
    row = await aggregate(
        tx,
        "SELECT MIN(after_account_id) AS start FROM interest_chunks WHERE business_date = ? AND after_account_id > ?",
        business_date,
        after,
    )
    return str(row["start"]) if row["start"] is not None else ""


async def _stop_past_limit(tx: Tx) -> None:
    """Stops a chunk that would take an account past the ledger's limit (PastLimit)."""
    over = await tx.fetchone(
        "SELECT r.account_id FROM accrual_rows r JOIN accounts a ON a.account_id = r.account_id"
        " WHERE a.balance_minor > ? - r.amount_minor ORDER BY r.account_id LIMIT 1",
        MAX_MINOR,
    )
    if over is not None:
        raise PastLimit(str(over["account_id"]))


async def _post_span(tx: Tx, span: _Span, tiers: tuple[InterestTier, ...], at: datetime) -> int:
    """Posts the span's interest as one transfer per account from the interest expense account:
    the transfers, both entries of each, and both balances. Returns the total posted."""
    await tx.execute(ROWS_DDL[tx.dialect])
    await tx.execute("DELETE FROM accrual_rows")
    await tx.execute(
        f"INSERT INTO accrual_rows (account_id, transfer_id, amount_minor) SELECT account_id, {span.transfer_id_sql()},"
        f" interest FROM (SELECT account_id, {interest_sql(tiers)} AS interest FROM accounts WHERE {_ELIGIBLE}"
        " AND account_id > ? AND account_id <= ?) chunk WHERE interest > 0",
        span.currency,
        day_end(span.business_date),
        span.after,
        span.last,
    )
    total = int((await aggregate(tx, "SELECT COALESCE(SUM(amount_minor), 0) AS total FROM accrual_rows"))["total"])
    if not total:
        return 0
    await _stop_past_limit(tx)
    await post_rows(
        tx,
        InternalAccount.INTEREST_EXPENSE.account_id(span.currency),
        span.currency,
        total,
        f"interest {span.business_date}",
        at,
        to_rows=True,
    )
    return total


async def post_rows(tx: Tx, internal: str, currency: str, total: int, description: str, at: datetime, *, to_rows: bool) -> None:
    """Posts one transfer per row of accrual_rows between the row's account and a bank-internal
    account (to the rows: interest; from them: fees), set-based: the transfers, both entries of
    each (the internal account's with its running balance) and every balance."""
    sign = 1 if to_rows else -1
    internal_row = await tx.fetchone(
        "UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = ? AND ABS(balance_minor - ?) <= ? RETURNING balance_minor",
        sign * total,
        internal,
        sign * total,
        MAX_MINOR,
    )
    if internal_row is None:
        raise PastLimit(internal)
    internal_start = int(internal_row["balance_minor"]) + sign * total
    debit, credit = ("?", "account_id") if to_rows else ("account_id", "?")
    posted = at.isoformat()
    await tx.execute(
        f"INSERT INTO transfers ({TRANSFER_COLUMNS}) SELECT transfer_id, {debit}, {credit}, amount_minor, ?, ?,"
        " NULL, NULL, ?, ? FROM accrual_rows",
        internal,
        currency,
        description,
        posted,
        acting(tx.context),
    )
    moved = await tx.execute(
        f"UPDATE accounts SET balance_minor = accounts.balance_minor + {sign} * r.amount_minor FROM accrual_rows r"
        f" WHERE accounts.account_id = r.account_id AND (accounts.floor_minor IS NULL"
        f" OR accounts.balance_minor - accounts.held_minor + {sign} * r.amount_minor >= accounts.floor_minor)"
    )
    rows = await aggregate(tx, "SELECT COUNT(*) AS n FROM accrual_rows")
    if moved != int(rows["n"]):  # a movement meanwhile left too little for a fee: nothing of the chunk stays
        raise Aborted("CONCURRENT_MOVEMENT", "an account moved while the chunk was posted; ask for the chunk again", {})
    await tx.execute(
        f"INSERT INTO entries ({ENTRY_COLUMNS}) SELECT r.account_id, r.transfer_id, {sign} * r.amount_minor, a.balance_minor,"
        " ?, ?, ? FROM accrual_rows r JOIN accounts a ON a.account_id = r.account_id",
        internal,
        description,
        posted,
    )
    await tx.execute(
        f"INSERT INTO entries ({ENTRY_COLUMNS}) SELECT ?, transfer_id, {-sign} * amount_minor,"
        f" ? - {sign} * SUM(amount_minor) OVER (ORDER BY account_id ROWS UNBOUNDED PRECEDING), account_id, ?, ? FROM accrual_rows",
        internal,
        internal_start,
        description,
        posted,
    )
