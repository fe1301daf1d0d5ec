"""Servicing in SQL: repayments, collections and arrears, decided on the locked loans.

Each unit works on a set of loans in a fixed number of statements, so that a collection chunk of
500 loans costs what one repayment does; a repayment is the set of one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from common.db.base import Settled, Tx, aggregate, stored
from common.db.idempotency import claim_new, refusal_of, refusal_text, replayed_resource
from common.db.keyset import Page, keyset_page
from common.errors import PreconditionFailed, ReasonedError
from common.idempotency import IdempotencyKey, key_reused
from common.money import Money
from services.lending.domain import (
    InstallmentOverdue,
    Loan,
    LoanEvent,
    LoanPaidOff,
    LoanRepaid,
    LoanStatus,
    Repayment,
    RepaymentKind,
    RepaymentStatus,
    require_active,
)
from services.lending.messages import OUTGOING
from services.lending.rows import (
    LOAN_COLUMNS,
    REFUSED,
    REPAYMENT_COLUMNS,
    STATE_COLUMNS,
    allocation_of,
    loan_of,
    move_loan,
    parts_json,
    repayment_of,
    select_loan,
    state_of,
)
from services.lending.servicing import Allocation, InstallmentState, newly_overdue


@dataclass(frozen=True)
class PaymentOrder:
    """A payment on one loan as the repository records it: `decide` allocates it on the loan's
    installments as they stand when its row is locked (raising to refuse)."""

    loan_id: str
    kind: RepaymentKind
    key: IdempotencyKey
    repayment_id: str  # the id a new repayment gets
    currency: str
    at: datetime
    decide: Callable[[list[InstallmentState]], Allocation]
    asked_minor: int = 0  # the amount the payment asks for (a refused one is kept with it); 0: whatever is due


class Collected(enum.Enum):
    POSTED = "POSTED"
    UNPAID = "UNPAID"  # refused for the account's sake: the installments are overdue
    VOIDED = "VOIDED"  # its request id was closed meanwhile: nothing happened


@dataclass(frozen=True)
class CollectionChunk:
    """One chunk of a collection run: the loans after `after_seq`, and each one's order."""

    currency: str
    after_seq: int
    limit: int
    order_for: Callable[[str], PaymentOrder]


@dataclass(frozen=True)
class CollectionPlan:
    examined: int
    last_seq: int
    done: bool
    total: int | None  # loans in the run (on the first chunk)
    takes: list[tuple[Repayment, str]]  # each collection (pending or already posted), with the account debited


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


async def states_of(tx: Tx, loan_ids: Sequence[str]) -> dict[str, list[InstallmentState]]:
    states: dict[str, list[InstallmentState]] = {loan_id: [] for loan_id in loan_ids}
    if loan_ids:
        rows = await tx.fetchall(
            f"SELECT {STATE_COLUMNS} FROM installments WHERE loan_id IN ({_marks(loan_ids)}) ORDER BY loan_id, number",
            *loan_ids,
        )
        for row in rows:
            states[row["loan_id"]].append(state_of(row))
    return states


async def states(tx: Tx, loan_id: str) -> list[InstallmentState]:
    return (await states_of(tx, [loan_id]))[loan_id]


async def select_repayment(tx: Tx, repayment_id: str) -> Repayment:
    row = await tx.fetchone(f"SELECT {REPAYMENT_COLUMNS} FROM repayments WHERE repayment_id = ?", repayment_id)
    return repayment_of(stored(row, repayment_id))


async def apply(tx: Tx, applied: Sequence[tuple[str, Allocation]], sign: int) -> None:
    """Adds payments' parts to their loans' installments (sign -1: takes them back)."""
    await tx.executemany(
        "UPDATE installments SET paid_penalty_minor = paid_penalty_minor + ?, paid_interest_minor = paid_interest_minor + ?,"
        " paid_principal_minor = paid_principal_minor + ?, waived_interest_minor = waived_interest_minor + ?"
        " WHERE loan_id = ? AND number = ?",
        [
            (sign * p.penalty, sign * p.interest, sign * p.principal, sign * p.waived_interest, loan_id, p.number)
            for loan_id, allocation in applied
            for p in allocation.parts
        ],
    )


async def asked_before(tx: Tx, keys: Sequence[IdempotencyKey]) -> dict[str, Repayment]:
    """The repayments (pending or posted) that these keys made, by request id; a key used for
    another request is refused, and so is one whose repayment was refused (as it was)."""
    if not keys:
        return {}
    scopes = {k.scope for k in keys}
    rows = await tx.fetchall(
        f"SELECT {REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint, refusal FROM repayments"
        f" WHERE scope IN ({_marks(list(scopes))}) AND request_id IN ({_marks(keys)})",
        *scopes,
        *(k.request_id for k in keys),
    )
    wanted = {(k.scope, k.request_id): k for k in keys}
    found = {}
    for row in rows:
        key = wanted.get((row["scope"], row["request_id"]))
        if key is None:
            continue
        if (row["operation"], row["fingerprint"]) != (key.operation, key.fingerprint):
            raise key_reused(key)
        if row["status"] == REFUSED:
            raise refusal_of(row["refusal"])
        found[key.request_id] = repayment_of(row)
    return found


async def lock_active(tx: Tx, loan_ids: Sequence[str]) -> set[str]:
    """The loans of `loan_ids` still DISBURSED, locked in one order until the unit ends (payments on
    one loan are allocated one after another)."""
    if not loan_ids:
        return set()
    lock = " ORDER BY seq FOR UPDATE" if tx.dialect == "postgres" else ""
    rows = await tx.fetchall(
        f"SELECT loan_id FROM loans WHERE status = ? AND loan_id IN ({_marks(loan_ids)}){lock}",
        LoanStatus.DISBURSED.value,
        *loan_ids,
    )
    return {row["loan_id"] for row in rows}


async def prepare_all(tx: Tx, orders: Sequence[PaymentOrder]) -> dict[str, Repayment]:
    """Payments asked for, by loan: the repayment each key made before (settled or pending), or a
    new PENDING one whose parts count as paid from now (so that no other payment allocates them
    again). A loan no longer active, or one its `decide` finds nothing to take from, has none."""
    active = await lock_active(tx, [o.loan_id for o in orders])  # first: a retry racing its original waits here
    before = await asked_before(tx, [o.key for o in orders])
    prepared = {o.loan_id: before[o.key.request_id] for o in orders if o.key.request_id in before}
    fresh = [o for o in orders if o.loan_id not in prepared]
    states = await states_of(tx, sorted(active - set(prepared)))
    rows, applied = [], []
    for order in fresh:
        if order.loan_id not in active:
            continue
        allocation = order.decide(states[order.loan_id])
        if not allocation.total:
            continue
        repayment = Repayment(
            order.repayment_id,
            order.loan_id,
            order.kind,
            RepaymentStatus.PENDING,
            Money(order.currency, allocation.total),
            allocation,
            order.at,
        )
        prepared[order.loan_id] = repayment
        applied.append((order.loan_id, allocation))
        k = order.key
        rows.append(
            (
                repayment.repayment_id,
                order.loan_id,
                order.kind.value,
                RepaymentStatus.PENDING.value,
                allocation.total,
                order.currency,
                parts_json(allocation),
                order.at.isoformat(),
                k.scope,
                k.request_id,
                k.operation,
                k.fingerprint,
            )
        )
    await apply(tx, applied, 1)
    await tx.executemany(
        f"INSERT INTO repayments ({REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return prepared


async def prepare(tx: Tx, order: PaymentOrder) -> Repayment | None:
    """One payment (see prepare_all); a loan not active is refused. A refusal met here (the
    loan not active, an amount beyond what is owed, a payoff quote moved on) stays the
    request_id's answer, as a refused debit's does."""
    await replayed_resource(tx, order.key)  # refuses a key used for another request
    try:
        prepared = await prepare_all(tx, [order])
        if order.loan_id not in prepared:
            require_active(stored(await select_loan(tx, order.loan_id), order.loan_id))
    except PreconditionFailed as refused:
        return await keep_refusal(tx, order, refused)
    return prepared.get(order.loan_id)


async def keep_refusal(tx: Tx, order: PaymentOrder, refused: PreconditionFailed) -> Repayment | None:
    """`refused` kept on the order's key, as a REJECTED repayment that took nothing (nothing was
    written before the refusal); where the key holds an answer already (the refusal it answered
    before, or an identical request that got there first), that answer."""
    k = order.key
    if order.asked_minor <= 0:
        raise refused
    kept = await tx.execute(
        f"INSERT INTO repayments ({REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint, refusal)"
        " VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, request_id) DO NOTHING",
        order.repayment_id,
        order.loan_id,
        order.kind.value,
        REFUSED,
        order.asked_minor,
        order.currency,
        order.at.isoformat(),
        k.scope,
        k.request_id,
        k.operation,
        k.fingerprint,
        refusal_text(refused),
    )
    if kept == 1:
        raise Settled(refused)
    return (await asked_before(tx, [k]))[k.request_id]  # raises the refusal it keeps


async def posted_all(tx: Tx, repayment_ids: Sequence[str], at: datetime) -> None:
    """The debits were taken: the repayments still PENDING become POSTED, their keys are claimed,
    LoanRepaid is announced for each, and a loan with nothing left owed (and no other payment
    pending) is PAID_OFF. Idempotent."""
    if not repayment_ids:
        return
    rows = await tx.fetchall(
        f"UPDATE repayments SET status = ?, posted_at = ? WHERE status = ? AND repayment_id IN ({_marks(repayment_ids)})"
        f" RETURNING {REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint",
        RepaymentStatus.POSTED.value,
        at.isoformat(),
        RepaymentStatus.PENDING.value,
        *repayment_ids,
    )
    if not rows:
        return
    await claim_new(
        tx, [(IdempotencyKey(r["request_id"], r["operation"], r["fingerprint"], r["scope"]), r["repayment_id"]) for r in rows]
    )
    repayments = [repayment_of(row) for row in rows]
    loan_ids = sorted({r.loan_id for r in repayments})
    loans = await loans_of(tx, loan_ids)
    states = await states_of(tx, loan_ids)
    events: list[LoanEvent] = [repaid(loans[r.loan_id], r, states[r.loan_id], at) for r in repayments]
    settled = [loan_id for loan_id in loan_ids if all(s.settled for s in states[loan_id])]
    await lock_active(tx, settled)  # two last payments posted at once: the second sees the first posted
    still_pending = await pending_on(tx, settled)
    await OUTGOING.append(tx, events)
    for loan_id in settled:
        if loan_id not in still_pending:
            loan = loans[loan_id]
            paid_off: list[LoanEvent] = [LoanPaidOff(loan_id, loan.customer_id, at)]
            await move_loan(tx, loan_id, LoanStatus.DISBURSED, LoanStatus.PAID_OFF, at, {}, paid_off, None)


def repaid(loan: Loan, r: Repayment, states: list[InstallmentState], at: datetime) -> LoanRepaid:
    a, currency = r.allocation, r.amount.currency
    outstanding = sum(s.owed_principal for s in states)
    return LoanRepaid(
        loan.loan_id,
        loan.customer_id,
        loan.account_id,
        r.repayment_id,
        r.amount,
        Money(currency, a.principal),
        Money(currency, a.interest),
        Money(currency, a.penalty),
        Money(currency, outstanding),
        at,
    )


async def loans_of(tx: Tx, loan_ids: Sequence[str]) -> dict[str, Loan]:
    rows = await tx.fetchall(f"SELECT {LOAN_COLUMNS} FROM loans WHERE loan_id IN ({_marks(loan_ids)})", *loan_ids)
    return {row["loan_id"]: loan_of(row) for row in rows}


async def pending_on(tx: Tx, loan_ids: Sequence[str]) -> set[str]:
    if not loan_ids:
        return set()
    rows = await tx.fetchall(
        f"SELECT DISTINCT loan_id FROM repayments WHERE status = ? AND loan_id IN ({_marks(loan_ids)})",
        RepaymentStatus.PENDING.value,
        *loan_ids,
    )
    return {row["loan_id"] for row in rows}


async def posted(tx: Tx, repayment_id: str, at: datetime) -> Repayment:
    await posted_all(tx, [repayment_id], at)
    return await select_repayment(tx, repayment_id)


async def rejected(tx: Tx, repayment_ids: Sequence[str]) -> None:
    """The debits never happened (their request ids closed, or refused for the bank's own
    collection): the pending repayments and their parts are gone, as if they had never been
    asked for. Idempotent."""
    if not repayment_ids:
        return
    rows = await tx.fetchall(
        f"DELETE FROM repayments WHERE status = ? AND repayment_id IN ({_marks(repayment_ids)}) RETURNING loan_id, parts_json",
        RepaymentStatus.PENDING.value,
        *repayment_ids,
    )
    await apply(tx, [(row["loan_id"], allocation_of(row["parts_json"])) for row in rows], -1)


async def refused(tx: Tx, repayment_id: str, refusal: ReasonedError) -> None:
    """The account refused the debit: the pending repayment's parts are given back, and its row
    keeps the refusal, which its request_id answers from now on (never a later debit). Idempotent."""
    row = await tx.fetchone(
        "UPDATE repayments SET status = ?, refusal = ? WHERE status = ? AND repayment_id = ? RETURNING loan_id, parts_json",
        REFUSED,
        refusal_text(refusal),
        RepaymentStatus.PENDING.value,
        repayment_id,
    )
    if row is not None:
        await apply(tx, [(row["loan_id"], allocation_of(row["parts_json"]))], -1)


async def mark_overdue(tx: Tx, loan_ids: Sequence[str], day: date, late_fee_minor: int, at: datetime) -> None:
    """The installments of these loans due by `day` and unpaid become overdue from their due date,
    charged the late fee once (the guard and RETURNING make "once" hold against a concurrent run);
    InstallmentOverdue for each."""
    if not loan_ids:
        return
    states = await states_of(tx, loan_ids)
    marking = [(loan_id, i.number) for loan_id in loan_ids for i in newly_overdue(states[loan_id], day)]
    if not marking:
        return
    pairs = ", ".join("(?, ?)" for _ in marking)
    marked = await tx.fetchall(
        "UPDATE installments SET overdue_since = due_date, penalty_minor = penalty_minor + ?"
        f" WHERE overdue_since IS NULL AND (loan_id, number) IN (VALUES {pairs}) RETURNING loan_id, number",
        late_fee_minor,
        *(value for pair in marking for value in pair),
    )
    loans = await loans_of(tx, loan_ids)
    by_number = {(loan_id, i.number): i for loan_id in loan_ids for i in states[loan_id]}
    events: list[LoanEvent] = []
    for row in sorted(marked, key=lambda r: (r["loan_id"], r["number"])):
        loan, installment = loans[row["loan_id"]], by_number[(row["loan_id"], row["number"])]
        currency = loan.principal.currency
        owed = Money(currency, installment.owed + late_fee_minor)
        events.append(
            InstallmentOverdue(
                loan.loan_id,
                loan.customer_id,
                installment.number,
                installment.due_date,
                owed,
                Money(currency, late_fee_minor),
                at,
            )
        )
    await OUTGOING.append(tx, events)


async def stale_pending(tx: Tx, before: datetime, limit: int) -> list[Repayment]:
    rows = await tx.fetchall(
        f"SELECT {REPAYMENT_COLUMNS} FROM repayments WHERE status = ? AND created_at < ? ORDER BY created_at LIMIT ?",
        RepaymentStatus.PENDING.value,
        before.isoformat(),
        limit,
    )
    return [repayment_of(row) for row in rows]


async def repayments(tx: Tx, loan_id: str, after: int, limit: int) -> Page[Repayment, int]:
    select = f"SELECT seq, {REPAYMENT_COLUMNS} FROM repayments"
    return await keyset_page(tx, select, "loan_id = ? AND status != ?", [loan_id, REFUSED], after, limit, repayment_of)


async def collection_chunk(tx: Tx, chunk: CollectionChunk) -> CollectionPlan:
    """The loans of one chunk of a collection run, each with what its collection takes (a
    pending repayment, new or left by an interrupted run, or one already posted)."""
    statuses = (LoanStatus.DISBURSED.value, LoanStatus.PAID_OFF.value)  # paid off during the run: still in its range
    rows = await tx.fetchall(
        "SELECT seq, loan_id, account_id FROM loans WHERE currency = ? AND status IN (?, ?) AND seq > ? ORDER BY seq LIMIT ?",
        chunk.currency,
        *statuses,
        chunk.after_seq,
        chunk.limit,
    )
    total = None
    if chunk.after_seq == 0:
        counted = await aggregate(
            tx, "SELECT COUNT(*) AS n FROM loans WHERE currency = ? AND status IN (?, ?)", chunk.currency, *statuses
        )
        total = int(counted["n"])
    prepared = await prepare_all(tx, [chunk.order_for(row["loan_id"]) for row in rows])
    takes = [(prepared[row["loan_id"]], row["account_id"]) for row in rows if row["loan_id"] in prepared]
    last = rows[-1]["seq"] if rows else chunk.after_seq
    return CollectionPlan(len(rows), last, len(rows) < chunk.limit, total, takes)


async def collection_settled(
    tx: Tx, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
) -> None:
    await posted_all(tx, [r.repayment_id for r, outcome in outcomes if outcome is Collected.POSTED], at)
    await rejected(tx, [r.repayment_id for r, outcome in outcomes if outcome is not Collected.POSTED])
    unpaid = sorted({r.loan_id for r, outcome in outcomes if outcome is Collected.UNPAID})
    await mark_overdue(tx, unpaid, day, late_fee_minor, at)
