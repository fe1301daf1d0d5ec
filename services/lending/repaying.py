"""The units of work of servicing, as the use cases hold them: a payment prepared, posted, refused
or dropped; a collection chunk planned and settled; installments marked overdue. Each loads what
it needs under its locks, lets the domain decide (what a payment takes, whether a loan is paid
off, which installment is overdue and the events of each), and saves that. Sets of loans are
loaded and saved in a fixed number of statements, so a chunk of 500 costs what one repayment does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from common.db.base import Settled, stored
from common.db.idempotency import claim_new, refusal_of
from common.errors import PreconditionFailed, ReasonedError
from common.idempotency import IdempotencyKey, key_reused
from common.money import Money
from services.lending.domain import (
    LoanEvent,
    LoanPaidOff,
    LoanStatus,
    Repayment,
    RepaymentKind,
    RepaymentStatus,
    overdue_event,
    repaid_event,
    require_active,
)
from services.lending.repository import LendingUnit
from services.lending.servicing import Allocation, InstallmentState, newly_overdue


@dataclass(frozen=True)
class PaymentOrder:
    """A payment on one loan: `decide` allocates it on the loan's installments as they stand once
    its row is locked (raising to refuse)."""

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


async def asked_before(uow: LendingUnit, keys: Sequence[IdempotencyKey]) -> dict[str, Repayment]:
    """The repayments (pending or posted) that these keys made, by request id; a key used for
    another request is refused, and so is one whose repayment was refused (as it was)."""
    found = {}
    for request_id, asked in (await uow.repayments.asked_before(keys)).items():
        if (asked.operation, asked.fingerprint) != (asked.key.operation, asked.key.fingerprint):
            raise key_reused(asked.key)
        if asked.refusal is not None:
            raise refusal_of(asked.refusal)
        found[request_id] = stored(asked.repayment, request_id)  # a row not refused maps to its repayment
    return found


async def prepare_all(uow: LendingUnit, orders: Sequence[PaymentOrder]) -> dict[str, Repayment]:
    """Payments asked for, by loan: the repayment each key made before (settled or pending), or a
    new PENDING one whose parts count as paid from now (so that no other payment allocates them
    again). A loan no longer active, or one its `decide` finds nothing to take from, has none."""
    active = await uow.loans.active_locked([o.loan_id for o in orders])  # first: a retry racing its original waits here
    before = await asked_before(uow, [o.key for o in orders])
    prepared = {o.loan_id: before[o.key.request_id] for o in orders if o.key.request_id in before}
    states = await uow.installments.states_of(sorted(active - set(prepared)))
    fresh: list[tuple[Repayment, IdempotencyKey]] = []
    for order in orders:
        if order.loan_id in prepared or order.loan_id not in active:
            continue
        allocation = order.decide(states[order.loan_id])
        if not allocation.total:
            continue
        amount = Money(order.currency, allocation.total)
        repayment = Repayment(
            order.repayment_id, order.loan_id, order.kind, RepaymentStatus.PENDING, amount, allocation, order.at
        )
        prepared[order.loan_id] = repayment
        fresh.append((repayment, order.key))
    await uow.installments.apply([(r.loan_id, r.allocation) for r, _ in fresh], 1)
    await uow.repayments.add_pending(fresh)
    return prepared


async def prepare(uow: LendingUnit, order: PaymentOrder) -> Repayment | None:
    """One payment (see prepare_all); a loan not active is refused. A refusal met here (the loan
    not active, an amount beyond what is owed, a payoff quote moved on) stays the request_id's
    answer, as a refused debit's does."""
    await uow.replayed(order.key)  # refuses a key used for another request
    try:
        prepared = await prepare_all(uow, [order])
        if order.loan_id not in prepared:
            loan = await uow.loans.get(order.loan_id)
            if loan is None:
                raise LookupError(order.loan_id)  # loans are never deleted; the use case found it before
            require_active(loan)
    except PreconditionFailed as refused:
        return await _keep_refusal(uow, order, refused)
    return prepared.get(order.loan_id)


async def _keep_refusal(uow: LendingUnit, order: PaymentOrder, refused: PreconditionFailed) -> Repayment | None:
    """`refused` kept on the order's key (nothing was written before the refusal); where the key
    holds an answer already (the refusal it answered before, or an identical request that got
    there first), that answer. A payment asking for no amount keeps nothing."""
    if order.asked_minor <= 0:
        raise refused
    asked = Repayment(
        order.repayment_id,
        order.loan_id,
        order.kind,
        RepaymentStatus.PENDING,
        Money(order.currency, order.asked_minor),
        Allocation(()),
        order.at,
    )
    if await uow.repayments.add_refused(asked, order.key, refused):
        raise Settled(refused)
    return (await asked_before(uow, [order.key]))[order.key.request_id]  # raises the refusal it keeps


async def post_all(uow: LendingUnit, repayment_ids: Sequence[str], at: datetime) -> None:
    """The debits were taken: the repayments still PENDING become POSTED, their keys are claimed,
    LoanRepaid is announced for each, and a loan with nothing left owed (and no other payment
    pending) is PAID_OFF. Idempotent."""
    posted = await uow.repayments.post(repayment_ids, at)
    if not posted:
        return
    await claim_new(uow.tx, [(key, repayment.repayment_id) for repayment, key in posted])
    loan_ids = sorted({r.loan_id for r, _ in posted})
    loans = await uow.loans.of(loan_ids)
    states = await uow.installments.states_of(loan_ids)
    await uow.publish([repaid_event(loans[r.loan_id], r, states[r.loan_id], at) for r, _ in posted])
    settled = [loan_id for loan_id in loan_ids if all(s.settled for s in states[loan_id])]
    await uow.loans.active_locked(settled)  # two last payments posted at once: the second sees the first posted
    still_pending = await uow.repayments.pending_on(settled)
    for loan_id in settled:
        if loan_id not in still_pending and await uow.loans.move(loan_id, LoanStatus.DISBURSED, LoanStatus.PAID_OFF, at, None):
            paid_off: list[LoanEvent] = [LoanPaidOff(loan_id, loans[loan_id].customer_id, at)]
            await uow.publish(paid_off)


async def posted(uow: LendingUnit, repayment_id: str, at: datetime) -> Repayment:
    await post_all(uow, [repayment_id], at)
    return await uow.repayments.get(repayment_id)


async def rejected(uow: LendingUnit, repayment_ids: Sequence[str]) -> None:
    """The debits never happened (their request ids closed, or refused for the bank's own
    collection): the pending repayments and their parts are gone, as if they had never been
    asked for. Idempotent."""
    await uow.installments.apply(await uow.repayments.drop_pending(repayment_ids), -1)


async def refused(uow: LendingUnit, repayment_id: str, refusal: ReasonedError) -> None:
    """The account refused the debit: the pending repayment's parts are given back, and its row
    keeps the refusal, which its request_id answers from now on (never a later debit). Idempotent."""
    taken = await uow.repayments.refuse(repayment_id, refusal)
    if taken is not None:
        await uow.installments.apply([taken], -1)


async def mark_overdue(uow: LendingUnit, loan_ids: Sequence[str], day: date, late_fee_minor: int, at: datetime) -> None:
    """The installments of these loans due by `day` and unpaid become overdue from their due date,
    charged the late fee once (the repository's conditional write makes "once" hold against a
    concurrent run); InstallmentOverdue for each."""
    if not loan_ids:
        return
    states = await uow.installments.states_of(loan_ids)
    marking = [(loan_id, i.number) for loan_id in loan_ids for i in newly_overdue(states[loan_id], day)]
    marked = await uow.installments.mark_overdue(marking, late_fee_minor)
    if not marked:
        return
    loans = await uow.loans.of(loan_ids)
    by_number = {(loan_id, i.number): i for loan_id in loan_ids for i in states[loan_id]}
    await uow.publish([overdue_event(loans[loan_id], by_number[(loan_id, n)], late_fee_minor, at) for loan_id, n in marked])


_IN_A_RUN = (LoanStatus.DISBURSED, LoanStatus.PAID_OFF)  # paid off during the run: still in its range


async def collection_chunk(uow: LendingUnit, chunk: CollectionChunk) -> CollectionPlan:
    """The loans of one chunk of a collection run, each with what its collection takes (a
    pending repayment, new or left by an interrupted run, or one already posted)."""
    loans = await uow.loans.chunk(chunk.currency, _IN_A_RUN, chunk.after_seq, chunk.limit)
    total = await uow.loans.count(chunk.currency, _IN_A_RUN) if chunk.after_seq == 0 else None
    prepared = await prepare_all(uow, [chunk.order_for(loan.loan_id) for loan in loans])
    takes = [(prepared[loan.loan_id], loan.account_id) for loan in loans if loan.loan_id in prepared]
    last = loans[-1].seq if loans else chunk.after_seq
    return CollectionPlan(len(loans), last, len(loans) < chunk.limit, total, takes)


async def collection_settled(
    uow: LendingUnit, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
) -> None:
    await post_all(uow, [r.repayment_id for r, outcome in outcomes if outcome is Collected.POSTED], at)
    await rejected(uow, [r.repayment_id for r, outcome in outcomes if outcome is not Collected.POSTED])
    unpaid = sorted({r.loan_id for r, outcome in outcomes if outcome is Collected.UNPAID})
    await mark_overdue(uow, unpaid, day, late_fee_minor, at)
