"""Loans and disbursement records in the lending context's own database."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from common.audit import record_change
from common.db.base import Row, Settled, Tx, aggregate, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, claim_new, once, refusal_of, refusal_text, replayed_resource
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import PreconditionFailed, ReasonedError
from common.idempotency import IdempotencyKey, key_reused
from common.money import Money
from services.lending.adapters import OUTGOING
from services.lending.domain import (
    ApprovalStep,
    InstallmentOverdue,
    Loan,
    LoanEvent,
    LoanPaidOff,
    LoanRepaid,
    LoanStatus,
    Repayment,
    RepaymentKind,
    RepaymentStatus,
    ScheduledInstallment,
    require_active,
)
from services.lending.schedule import Installment
from services.lending.servicing import Allocation, InstallmentState, Part, newly_overdue

_COLUMNS = (
    "loan_id, customer_id, account_id, principal_minor, currency, term_months, annual_rate, status, saga_id,"
    " created_at, updated_at, installment_minor, first_due_date, applied_by, first_approver"
)
_INSTALLMENT_COLUMNS = "loan_id, number, due_date, principal_minor, interest_minor, principal_after_minor, period_start"
_STATE_COLUMNS = (
    f"{_INSTALLMENT_COLUMNS}, penalty_minor, paid_penalty_minor, paid_interest_minor, paid_principal_minor,"
    " waived_interest_minor, overdue_since"
)
_REPAYMENT_COLUMNS = "repayment_id, loan_id, kind, status, amount_minor, currency, parts_json, created_at"
_REFUSED = "REJECTED"  # a repayment's row kept with the refusal its request_id answers for good
_OPEN = "penalty_minor + interest_minor + principal_minor > paid_penalty_minor + paid_interest_minor + paid_principal_minor + waived_interest_minor"


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


def _loan(row: Row) -> Loan:
    return Loan(
        row["loan_id"],
        row["customer_id"],
        row["account_id"],
        Money(row["currency"], row["principal_minor"]),
        row["term_months"],
        row["annual_rate"],
        LoanStatus(row["status"]),
        row["saga_id"],
        datetime.fromisoformat(row["created_at"]),
        datetime.fromisoformat(row["updated_at"]),
        row["installment_minor"],
        date.fromisoformat(row["first_due_date"]) if row["first_due_date"] else None,
        row["applied_by"],
        row["first_approver"],
    )


def _period_start(row: Row) -> date | None:
    return date.fromisoformat(row["period_start"]) if row["period_start"] else None


def _state(row: Row) -> InstallmentState:
    return InstallmentState(
        row["number"],
        date.fromisoformat(row["due_date"]),
        row["principal_minor"],
        row["interest_minor"],
        _period_start(row),
        row["penalty_minor"],
        row["paid_principal_minor"],
        row["paid_interest_minor"],
        row["paid_penalty_minor"],
        row["waived_interest_minor"],
        date.fromisoformat(row["overdue_since"]) if row["overdue_since"] else None,
    )


def _scheduled(row: Row, currency: str) -> ScheduledInstallment:
    return ScheduledInstallment(
        Installment(
            row["number"], date.fromisoformat(row["due_date"]), row["principal_minor"], row["interest_minor"], _period_start(row)
        ),
        row["principal_after_minor"],
        currency,
        _state(row),
    )


def _parts_json(allocation: Allocation) -> str:
    return json.dumps([[p.number, p.penalty, p.interest, p.principal, p.waived_interest] for p in allocation.parts])


def _allocation(parts_json: str) -> Allocation:
    return Allocation(tuple(Part(*values) for values in json.loads(parts_json)))


def _repayment(row: Row) -> Repayment:
    return Repayment(
        row["repayment_id"],
        row["loan_id"],
        RepaymentKind(row["kind"]),
        RepaymentStatus(row["status"]),
        Money(row["currency"], row["amount_minor"]),
        _allocation(row["parts_json"]),
        datetime.fromisoformat(row["created_at"]),
    )


async def _select(tx: Tx, loan_id: str) -> Loan | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM loans WHERE loan_id = ?", loan_id)
    return _loan(row) if row else None


async def _insert(tx: Tx, loan: Loan, key: IdempotencyKey) -> Loan:
    replayed = await claim(tx, key, loan.loan_id)
    if replayed is not None:
        return stored(await _select(tx, replayed), replayed)
    await tx.execute(
        f"INSERT INTO loans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, '')",
        loan.loan_id,
        loan.customer_id,
        loan.account_id,
        loan.principal.minor,
        loan.principal.currency,
        loan.term_months,
        loan.annual_rate,
        loan.status.value,
        loan.saga_id,
        loan.created_at.isoformat(),
        loan.updated_at.isoformat(),
        loan.applied_by,
    )
    return loan


# The audit trail's name for each move of a loan (a move is a change no idempotency key claims).
_MOVES = {
    LoanStatus.DISBURSING: "DisburseLoan",
    LoanStatus.DISBURSED: "DisburseLoan.completed",
    LoanStatus.DISBURSEMENT_FAILED: "DisburseLoan.failed",
    LoanStatus.PAID_OFF: "RepayLoan.paid_off",
}


async def _move(
    tx: Tx,
    loan_id: str,
    expected: LoanStatus,
    status: LoanStatus,
    at: datetime,
    changes: dict[str, object],
    events: list[LoanEvent],
    request_id: str | None,
) -> bool:
    """Moves a loan on from `expected` only; False when it is no longer there (an idempotent no-op)."""
    sets = "".join(f", {column} = ?" for column in changes)
    moved = await tx.execute(
        f"UPDATE loans SET status = ?, updated_at = ?{sets} WHERE loan_id = ? AND status = ?",
        status.value,
        at.isoformat(),
        *changes.values(),
        loan_id,
        expected.value,
    )
    if moved:
        await OUTGOING.append(tx, events)
        await record_change(tx, _MOVES[status], loan_id, request_id)
    return moved == 1


@dataclass(frozen=True)
class ApprovalOrder:
    """An admin's approval as the repository records it: `decide` says what it does to the loan
    as it stands once its row is locked (raising to refuse); `schedule` is the repayment
    schedule of the loan approved at `rate` today."""

    loan_id: str
    key: IdempotencyKey
    approver: str
    rate: str
    at: datetime
    decide: Callable[[Loan], ApprovalStep]
    schedule: Callable[[Loan], tuple[Installment, ...]]


async def _approve(tx: Tx, order: ApprovalOrder) -> None:
    """The approval decided on the locked loan in the unit that writes it, once for its key: a
    replay or an identical request racing it answers as the first did."""

    async def make() -> None:
        loan = await _locked(tx, order.loan_id)
        step = order.decide(loan)
        if step is ApprovalStep.FIRST:
            changes: dict[str, object] = {"annual_rate": order.rate, "first_approver": order.approver}
            await _set_status(tx, loan, LoanStatus.AWAITING_SECOND_APPROVAL, order.at, changes)
        elif step is ApprovalStep.FINAL:
            await _approved(tx, loan, order.rate, order.schedule(loan), order.at)

    async def replay(_: str) -> None:
        return None

    await once(tx, order.key, order.loan_id, make, replay)


async def _start_disbursement(tx: Tx, loan_id: str, key: IdempotencyKey, at: datetime) -> None:
    """An APPROVED loan moves to DISBURSING, decided on the locked loan, once for its key; one
    already disbursing (or done) is left as it is (its saga reports); any other is refused, and
    the refusal stays the request_id's answer (a replay once the loan is approved does not
    disburse it)."""

    async def make() -> None:
        loan = await _locked(tx, loan_id)
        if loan.status is LoanStatus.APPROVED:
            await _set_status(tx, loan, LoanStatus.DISBURSING, at, {})
        elif loan.status not in (LoanStatus.DISBURSING, LoanStatus.DISBURSED, LoanStatus.DISBURSEMENT_FAILED):
            raise PreconditionFailed("LOAN_NOT_APPROVED", f"the loan is {loan.status.value}", {"loan_id": loan_id})

    async def replay(_: str) -> None:
        return None

    await once(tx, key, loan_id, make, replay)


async def _locked(tx: Tx, loan_id: str) -> Loan:
    lock = " FOR UPDATE" if tx.dialect == "postgres" else ""
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM loans WHERE loan_id = ?{lock}", loan_id)
    if row is None:
        raise LookupError(loan_id)  # loans are never deleted; the use case found it before
    return _loan(row)


async def _set_status(tx: Tx, loan: Loan, status: LoanStatus, at: datetime, changes: dict[str, object]) -> None:
    sets = "".join(f", {column} = ?" for column in changes)
    await tx.execute(
        f"UPDATE loans SET status = ?, updated_at = ?{sets} WHERE loan_id = ?",
        status.value,
        at.isoformat(),
        *changes.values(),
        loan.loan_id,
    )


async def _approved(tx: Tx, loan: Loan, rate: str, schedule: tuple[Installment, ...], at: datetime) -> None:
    """-> APPROVED with its rate and schedule."""
    first = schedule[0]
    changes: dict[str, object] = {
        "annual_rate": rate,
        "installment_minor": first.total_minor,
        "first_due_date": first.due_date.isoformat(),
    }
    await _set_status(tx, loan, LoanStatus.APPROVED, at, changes)
    outstanding, rows = sum(i.principal_minor for i in schedule), []
    for installment in schedule:
        outstanding -= installment.principal_minor
        rows.append(
            (
                loan.loan_id,
                installment.number,
                installment.due_date.isoformat(),
                installment.principal_minor,
                installment.interest_minor,
                outstanding,
                installment.period_start.isoformat() if installment.period_start else None,
            )
        )
    await tx.executemany(f"INSERT INTO installments ({_INSTALLMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


async def _installments(tx: Tx, loan_id: str, currency: str, after: int, limit: int) -> Page[ScheduledInstallment, int]:
    return await keyset_page(
        tx,
        f"SELECT {_STATE_COLUMNS} FROM installments",
        "loan_id = ?",
        [loan_id],
        after,
        limit,
        lambda row: _scheduled(row, currency),
        key="number",
    )


async def _page(tx: Tx, customer_id: str, after: int, limit: int) -> Page[Loan, int]:
    return await keyset_page(tx, f"SELECT seq, {_COLUMNS} FROM loans", "customer_id = ?", [customer_id], after, limit, _loan)


async def _record_disbursement(tx: Tx, disbursement_id: str, loan_id: str, at: datetime) -> None:
    await tx.execute(
        "INSERT INTO disbursements (disbursement_id, loan_id, status, created_at) VALUES (?, ?, 'ACTIVE', ?)"
        " ON CONFLICT (disbursement_id) DO NOTHING",
        disbursement_id,
        loan_id,
        at.isoformat(),
    )


async def _cancel_disbursement(tx: Tx, disbursement_id: str) -> None:
    await tx.execute("UPDATE disbursements SET status = 'CANCELLED' WHERE disbursement_id = ?", disbursement_id)


# --- servicing: repayments, collections, arrears ----------------------------------------------
# Each unit works on a set of loans in a fixed number of statements, so that a collection chunk of
# 500 loans costs what one repayment does; a repayment is the set of one.


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


async def _states_of(tx: Tx, loan_ids: Sequence[str]) -> dict[str, list[InstallmentState]]:
    states: dict[str, list[InstallmentState]] = {loan_id: [] for loan_id in loan_ids}
    if loan_ids:
        rows = await tx.fetchall(
            f"SELECT {_STATE_COLUMNS} FROM installments WHERE loan_id IN ({_marks(loan_ids)}) ORDER BY loan_id, number",
            *loan_ids,
        )
        for row in rows:
            states[row["loan_id"]].append(_state(row))
    return states


async def _states(tx: Tx, loan_id: str) -> list[InstallmentState]:
    return (await _states_of(tx, [loan_id]))[loan_id]


async def _select_repayment(tx: Tx, repayment_id: str) -> Repayment:
    row = await tx.fetchone(f"SELECT {_REPAYMENT_COLUMNS} FROM repayments WHERE repayment_id = ?", repayment_id)
    return _repayment(stored(row, repayment_id))


async def _apply(tx: Tx, applied: Sequence[tuple[str, Allocation]], sign: int) -> None:
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


async def _asked_before(tx: Tx, keys: Sequence[IdempotencyKey]) -> dict[str, Repayment]:
    """The repayments (pending or posted) that these keys made, by request id; a key used for
    another request is refused, and so is one whose repayment was refused (as it was)."""
    if not keys:
        return {}
    scopes = {k.scope for k in keys}
    rows = await tx.fetchall(
        f"SELECT {_REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint, refusal FROM repayments"
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
        if row["status"] == _REFUSED:
            raise refusal_of(row["refusal"])
        found[key.request_id] = _repayment(row)
    return found


async def _lock_active(tx: Tx, loan_ids: Sequence[str]) -> set[str]:
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


async def _prepare_all(tx: Tx, orders: Sequence[PaymentOrder]) -> dict[str, Repayment]:
    """Payments asked for, by loan: the repayment each key made before (settled or pending), or a
    new PENDING one whose parts count as paid from now (so that no other payment allocates them
    again). A loan no longer active, or one its `decide` finds nothing to take from, has none."""
    active = await _lock_active(tx, [o.loan_id for o in orders])  # first: a retry racing its original waits here
    before = await _asked_before(tx, [o.key for o in orders])
    prepared = {o.loan_id: before[o.key.request_id] for o in orders if o.key.request_id in before}
    fresh = [o for o in orders if o.loan_id not in prepared]
    states = await _states_of(tx, sorted(active - set(prepared)))
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
                _parts_json(allocation),
                order.at.isoformat(),
                k.scope,
                k.request_id,
                k.operation,
                k.fingerprint,
            )
        )
    await _apply(tx, applied, 1)
    await tx.executemany(
        f"INSERT INTO repayments ({_REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return prepared


async def _prepare(tx: Tx, order: PaymentOrder) -> Repayment | None:
    """One payment (see _prepare_all); a loan not active is refused. A refusal met here (the
    loan not active, an amount beyond what is owed, a payoff quote moved on) stays the
    request_id's answer, as a refused debit's does."""
    await replayed_resource(tx, order.key)  # refuses a key used for another request
    try:
        prepared = await _prepare_all(tx, [order])
        if order.loan_id not in prepared:
            require_active(stored(await _select(tx, order.loan_id), order.loan_id))
    except PreconditionFailed as refused:
        return await _keep_refusal(tx, order, refused)
    return prepared.get(order.loan_id)


async def _keep_refusal(tx: Tx, order: PaymentOrder, refused: PreconditionFailed) -> Repayment | None:
    """`refused` kept on the order's key, as a REJECTED repayment that took nothing (nothing was
    written before the refusal); where the key holds an answer already (the refusal it answered
    before, or an identical request that got there first), that answer."""
    k = order.key
    if order.asked_minor <= 0:
        raise refused
    kept = await tx.execute(
        f"INSERT INTO repayments ({_REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint, refusal)"
        " VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, request_id) DO NOTHING",
        order.repayment_id,
        order.loan_id,
        order.kind.value,
        _REFUSED,
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
    return (await _asked_before(tx, [k]))[k.request_id]  # raises the refusal it keeps


async def _posted_all(tx: Tx, repayment_ids: Sequence[str], at: datetime) -> None:
    """The debits were taken: the repayments still PENDING become POSTED, their keys are claimed,
    LoanRepaid is announced for each, and a loan with nothing left owed (and no other payment
    pending) is PAID_OFF. Idempotent."""
    if not repayment_ids:
        return
    rows = await tx.fetchall(
        f"UPDATE repayments SET status = ?, posted_at = ? WHERE status = ? AND repayment_id IN ({_marks(repayment_ids)})"
        f" RETURNING {_REPAYMENT_COLUMNS}, scope, request_id, operation, fingerprint",
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
    repayments = [_repayment(row) for row in rows]
    loan_ids = sorted({r.loan_id for r in repayments})
    loans = await _loans_of(tx, loan_ids)
    states = await _states_of(tx, loan_ids)
    events: list[LoanEvent] = [_repaid(loans[r.loan_id], r, states[r.loan_id], at) for r in repayments]
    settled = [loan_id for loan_id in loan_ids if all(s.settled for s in states[loan_id])]
    await _lock_active(tx, settled)  # two last payments posted at once: the second sees the first posted
    still_pending = await _pending_on(tx, settled)
    await OUTGOING.append(tx, events)
    for loan_id in settled:
        if loan_id not in still_pending:
            loan = loans[loan_id]
            paid_off: list[LoanEvent] = [LoanPaidOff(loan_id, loan.customer_id, at)]
            await _move(tx, loan_id, LoanStatus.DISBURSED, LoanStatus.PAID_OFF, at, {}, paid_off, None)


def _repaid(loan: Loan, r: Repayment, states: list[InstallmentState], at: datetime) -> LoanRepaid:
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


async def _loans_of(tx: Tx, loan_ids: Sequence[str]) -> dict[str, Loan]:
    rows = await tx.fetchall(f"SELECT {_COLUMNS} FROM loans WHERE loan_id IN ({_marks(loan_ids)})", *loan_ids)
    return {row["loan_id"]: _loan(row) for row in rows}


async def _pending_on(tx: Tx, loan_ids: Sequence[str]) -> set[str]:
    if not loan_ids:
        return set()
    rows = await tx.fetchall(
        f"SELECT DISTINCT loan_id FROM repayments WHERE status = ? AND loan_id IN ({_marks(loan_ids)})",
        RepaymentStatus.PENDING.value,
        *loan_ids,
    )
    return {row["loan_id"] for row in rows}


async def _posted(tx: Tx, repayment_id: str, at: datetime) -> Repayment:
    await _posted_all(tx, [repayment_id], at)
    return await _select_repayment(tx, repayment_id)


async def _rejected(tx: Tx, repayment_ids: Sequence[str]) -> None:
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
    await _apply(tx, [(row["loan_id"], _allocation(row["parts_json"])) for row in rows], -1)


async def _refused(tx: Tx, repayment_id: str, refusal: ReasonedError) -> None:
    """The account refused the debit: the pending repayment's parts are given back, and its row
    keeps the refusal, which its request_id answers from now on (never a later debit). Idempotent."""
    row = await tx.fetchone(
        "UPDATE repayments SET status = ?, refusal = ? WHERE status = ? AND repayment_id = ? RETURNING loan_id, parts_json",
        _REFUSED,
        refusal_text(refusal),
        RepaymentStatus.PENDING.value,
        repayment_id,
    )
    if row is not None:
        await _apply(tx, [(row["loan_id"], _allocation(row["parts_json"]))], -1)


async def _mark_overdue(tx: Tx, loan_ids: Sequence[str], day: date, late_fee_minor: int, at: datetime) -> None:
    """The installments of these loans due by `day` and unpaid become overdue from their due date,
    charged the late fee once (the guard and RETURNING make "once" hold against a concurrent run);
    InstallmentOverdue for each."""
    if not loan_ids:
        return
    states = await _states_of(tx, loan_ids)
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
    loans = await _loans_of(tx, loan_ids)
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


async def _stale_pending(tx: Tx, before: datetime, limit: int) -> list[Repayment]:
    rows = await tx.fetchall(
        f"SELECT {_REPAYMENT_COLUMNS} FROM repayments WHERE status = ? AND created_at < ? ORDER BY created_at LIMIT ?",
        RepaymentStatus.PENDING.value,
        before.isoformat(),
        limit,
    )
    return [_repayment(row) for row in rows]


async def _repayments(tx: Tx, loan_id: str, after: int, limit: int) -> Page[Repayment, int]:
    select = f"SELECT seq, {_REPAYMENT_COLUMNS} FROM repayments"
    return await keyset_page(tx, select, "loan_id = ? AND status != ?", [loan_id, _REFUSED], after, limit, _repayment)


async def _collection_chunk(tx: Tx, chunk: CollectionChunk) -> CollectionPlan:
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
    prepared = await _prepare_all(tx, [chunk.order_for(row["loan_id"]) for row in rows])
    takes = [(prepared[row["loan_id"]], row["account_id"]) for row in rows if row["loan_id"] in prepared]
    last = rows[-1]["seq"] if rows else chunk.after_seq
    return CollectionPlan(len(rows), last, len(rows) < chunk.limit, total, takes)


async def _collection_settled(
    tx: Tx, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
) -> None:
    await _posted_all(tx, [r.repayment_id for r, outcome in outcomes if outcome is Collected.POSTED], at)
    await _rejected(tx, [r.repayment_id for r, outcome in outcomes if outcome is not Collected.POSTED])
    unpaid = sorted({r.loan_id for r, outcome in outcomes if outcome is Collected.UNPAID})
    await _mark_overdue(tx, unpaid, day, late_fee_minor, at)


class LoanRepository(Protocol):
    async def add(self, loan: Loan, key: IdempotencyKey) -> Loan: ...

    async def get(self, loan_id: str) -> Loan | None: ...

    async def move(
        self,
        loan_id: str,
        expected: LoanStatus,
        status: LoanStatus,
        at: datetime,
        changes: dict[str, str] | None = None,
        events: list[LoanEvent] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Moves the loan on from `expected` only (False: it was not there); `request_id` is the
        key of the request that moved it, for the audit trail (None: the call's)."""

    async def page(self, customer_id: str, after: int, limit: int) -> Page[Loan, int]: ...

    async def approve(self, order: ApprovalOrder) -> None:
        """The approval applied as `order.decide` says on the locked loan, once for its key."""

    async def start_disbursement(self, loan_id: str, key: IdempotencyKey, at: datetime) -> None:
        """APPROVED -> DISBURSING once for its key (a loan already disbursing or done: as it is);
        LOAN_NOT_APPROVED otherwise, kept as the key's answer."""

    async def installments(self, loan: Loan, after: int, limit: int) -> Page[ScheduledInstallment, int]: ...

    async def record_disbursement(self, disbursement_id: str, loan_id: str, at: datetime) -> None: ...

    async def cancel_disbursement(self, disbursement_id: str) -> None: ...

    async def states(self, loan_id: str) -> list[InstallmentState]: ...

    async def prepare(self, order: PaymentOrder) -> Repayment | None:
        """The repayment of `order.key` (as it stands), or a new PENDING one; None: nothing to take."""

    async def posted(self, repayment_id: str, at: datetime) -> Repayment: ...

    async def rejected(self, repayment_id: str) -> None: ...

    async def refused(self, repayment_id: str, refusal: ReasonedError) -> None:
        """The debit was refused: the repayment is settled as `refusal`, its request_id's answer."""

    async def stale_pending(self, before: datetime, limit: int) -> list[Repayment]: ...

    async def repayments(self, loan_id: str, after: int, limit: int) -> Page[Repayment, int]: ...

    async def collection_chunk(self, chunk: CollectionChunk) -> CollectionPlan: ...

    async def collection_settled(
        self, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
    ) -> None:
        """Each collection posted, unpaid (its installments overdue) or voided, in one transaction."""


@og_component()
class SqlLoanRepository(BaseComponent, LoanRepository):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def add(self, loan: Loan, key: IdempotencyKey) -> Loan:
        return await self._db.write(_insert, loan, key)

    async def get(self, loan_id: str) -> Loan | None:
        return await self._db.read(_select, loan_id)

    async def move(
        self,
        loan_id: str,
        expected: LoanStatus,
        status: LoanStatus,
        at: datetime,
        changes: dict[str, str] | None = None,
        events: list[LoanEvent] | None = None,
        request_id: str | None = None,
    ) -> bool:
        return await self._db.write(_move, loan_id, expected, status, at, dict(changes or {}), events or [], request_id)

    async def page(self, customer_id: str, after: int, limit: int) -> Page[Loan, int]:
        return await self._db.read(_page, customer_id, after, limit)

    async def approve(self, order: ApprovalOrder) -> None:
        await self._db.write(_approve, order)

    async def start_disbursement(self, loan_id: str, key: IdempotencyKey, at: datetime) -> None:
        await self._db.write(_start_disbursement, loan_id, key, at)

    async def installments(self, loan: Loan, after: int, limit: int) -> Page[ScheduledInstallment, int]:
        return await self._db.read(_installments, loan.loan_id, loan.principal.currency, after, limit)

    async def record_disbursement(self, disbursement_id: str, loan_id: str, at: datetime) -> None:
        await self._db.write(_record_disbursement, disbursement_id, loan_id, at)

    async def cancel_disbursement(self, disbursement_id: str) -> None:
        await self._db.write(_cancel_disbursement, disbursement_id)

    async def states(self, loan_id: str) -> list[InstallmentState]:
        return await self._db.read(_states, loan_id)

    async def prepare(self, order: PaymentOrder) -> Repayment | None:
        return await self._db.write(_prepare, order)

    async def posted(self, repayment_id: str, at: datetime) -> Repayment:
        return await self._db.write(_posted, repayment_id, at)

    async def rejected(self, repayment_id: str) -> None:
        await self._db.write(_rejected, [repayment_id])

    async def refused(self, repayment_id: str, refusal: ReasonedError) -> None:
        await self._db.write(_refused, repayment_id, refusal)

    async def stale_pending(self, before: datetime, limit: int) -> list[Repayment]:
        return await self._db.read(_stale_pending, before, limit)

    async def repayments(self, loan_id: str, after: int, limit: int) -> Page[Repayment, int]:
        return await self._db.read(_repayments, loan_id, after, limit)

    async def collection_chunk(self, chunk: CollectionChunk) -> CollectionPlan:
        return await self._db.write(_collection_chunk, chunk)

    async def collection_settled(
        self, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
    ) -> None:
        await self._db.write(_collection_settled, outcomes, day, late_fee_minor, at)
