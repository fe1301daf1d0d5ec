"""Loans and disbursement records in the lending context's own database.

This file holds a loan's life up to its disbursement and the repository that composes the units;
the rows and their mapping are in rows.py, repayments, collections and arrears in servicing_sql.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from common.db.base import Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, once
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import PreconditionFailed, ReasonedError
from common.idempotency import IdempotencyKey
from services.lending.domain import (
    ApprovalStep,
    Loan,
    LoanEvent,
    LoanStatus,
    Repayment,
    ScheduledInstallment,
)
from services.lending.rows import INSTALLMENT_COLUMNS, LOAN_COLUMNS, STATE_COLUMNS, loan_of, move_loan, scheduled_of, select_loan
from services.lending.schedule import Installment
from services.lending.servicing import InstallmentState
from services.lending.servicing_sql import (
    Collected,
    CollectionChunk,
    CollectionPlan,
    PaymentOrder,
    collection_chunk,
    collection_settled,
    posted,
    prepare,
    refused,
    rejected,
    repayments,
    stale_pending,
    states,
)


async def _insert(tx: Tx, loan: Loan, key: IdempotencyKey) -> Loan:
    replayed = await claim(tx, key, loan.loan_id)
    if replayed is not None:
        return stored(await select_loan(tx, replayed), replayed)
    await tx.execute(
        f"INSERT INTO loans ({LOAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, '')",
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
    row = await tx.fetchone(f"SELECT {LOAN_COLUMNS} FROM loans WHERE loan_id = ?{lock}", loan_id)
    if row is None:
        raise LookupError(loan_id)  # loans are never deleted; the use case found it before
    return loan_of(row)


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
    await tx.executemany(f"INSERT INTO installments ({INSTALLMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


async def _installments(tx: Tx, loan_id: str, currency: str, after: int, limit: int) -> Page[ScheduledInstallment, int]:
    return await keyset_page(
        tx,
        f"SELECT {STATE_COLUMNS} FROM installments",
        "loan_id = ?",
        [loan_id],
        after,
        limit,
        lambda row: scheduled_of(row, currency),
        key="number",
    )


async def _page(tx: Tx, customer_id: str, after: int, limit: int) -> Page[Loan, int]:
    return await keyset_page(
        tx, f"SELECT seq, {LOAN_COLUMNS} FROM loans", "customer_id = ?", [customer_id], after, limit, loan_of
    )


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
        return await self._db.read(select_loan, loan_id)

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
        return await self._db.write(move_loan, loan_id, expected, status, at, dict(changes or {}), events or [], request_id)

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
        return await self._db.read(states, loan_id)

    async def prepare(self, order: PaymentOrder) -> Repayment | None:
        return await self._db.write(prepare, order)

    async def posted(self, repayment_id: str, at: datetime) -> Repayment:
        return await self._db.write(posted, repayment_id, at)

    async def rejected(self, repayment_id: str) -> None:
        await self._db.write(rejected, [repayment_id])

    async def refused(self, repayment_id: str, refusal: ReasonedError) -> None:
        await self._db.write(refused, repayment_id, refusal)

    async def stale_pending(self, before: datetime, limit: int) -> list[Repayment]:
        return await self._db.read(stale_pending, before, limit)

    async def repayments(self, loan_id: str, after: int, limit: int) -> Page[Repayment, int]:
        return await self._db.read(repayments, loan_id, after, limit)

    async def collection_chunk(self, chunk: CollectionChunk) -> CollectionPlan:
        return await self._db.write(collection_chunk, chunk)

    async def collection_settled(
        self, outcomes: list[tuple[Repayment, Collected]], day: date, late_fee_minor: int, at: datetime
    ) -> None:
        await self._db.write(collection_settled, outcomes, day, late_fee_minor, at)
