"""Loans and disbursement records in the lending context's own database."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from common.audit import record_change
from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.idempotency import IdempotencyKey
from common.money import Money
from services.lending.adapters import OUTGOING
from services.lending.domain import Loan, LoanEvent, LoanStatus, ScheduledInstallment
from services.lending.schedule import Installment

_COLUMNS = (
    "loan_id, customer_id, account_id, principal_minor, currency, term_months, annual_rate, status, saga_id,"
    " created_at, updated_at, installment_minor, first_due_date, applied_by, first_approver"
)
_INSTALLMENT_COLUMNS = "loan_id, number, due_date, principal_minor, interest_minor, principal_after_minor"


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


def _scheduled(row: Row, currency: str) -> ScheduledInstallment:
    return ScheduledInstallment(
        Installment(row["number"], date.fromisoformat(row["due_date"]), row["principal_minor"], row["interest_minor"]),
        row["principal_after_minor"],
        currency,
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
    LoanStatus.AWAITING_SECOND_APPROVAL: "ApproveLoan.first",
    LoanStatus.APPROVED: "ApproveLoan",
    LoanStatus.DISBURSING: "DisburseLoan",
    LoanStatus.DISBURSED: "DisburseLoan.completed",
    LoanStatus.DISBURSEMENT_FAILED: "DisburseLoan.failed",
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


async def _approve(
    tx: Tx,
    loan_id: str,
    expected: LoanStatus,
    rate: str,
    schedule: tuple[Installment, ...],
    at: datetime,
    request_id: str | None,
) -> bool:
    """`expected` -> APPROVED with its rate and schedule, in one transaction; False if it was not there."""
    first = schedule[0]
    changes: dict[str, object] = {
        "annual_rate": rate,
        "installment_minor": first.total_minor,
        "first_due_date": first.due_date.isoformat(),
    }
    if not await _move(tx, loan_id, expected, LoanStatus.APPROVED, at, changes, [], request_id):
        return False
    outstanding, rows = sum(i.principal_minor for i in schedule), []
    for installment in schedule:
        outstanding -= installment.principal_minor
        rows.append(
            (
                loan_id,
                installment.number,
                installment.due_date.isoformat(),
                installment.principal_minor,
                installment.interest_minor,
                outstanding,
            )
        )
    await tx.executemany(f"INSERT INTO installments ({_INSTALLMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    return True


async def _installments(tx: Tx, loan_id: str, currency: str, after: int, limit: int) -> Page[ScheduledInstallment, int]:
    return await keyset_page(
        tx,
        f"SELECT {_INSTALLMENT_COLUMNS} FROM installments",
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

    async def approve(
        self,
        loan_id: str,
        expected: LoanStatus,
        rate: str,
        schedule: tuple[Installment, ...],
        at: datetime,
        request_id: str | None,
    ) -> bool:
        """`expected` -> APPROVED with its rate and repayment schedule; False if it was not there."""

    async def installments(self, loan: Loan, after: int, limit: int) -> Page[ScheduledInstallment, int]: ...

    async def record_disbursement(self, disbursement_id: str, loan_id: str, at: datetime) -> None: ...

    async def cancel_disbursement(self, disbursement_id: str) -> None: ...


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

    async def approve(
        self,
        loan_id: str,
        expected: LoanStatus,
        rate: str,
        schedule: tuple[Installment, ...],
        at: datetime,
        request_id: str | None,
    ) -> bool:
        return await self._db.write(_approve, loan_id, expected, rate, schedule, at, request_id)

    async def installments(self, loan: Loan, after: int, limit: int) -> Page[ScheduledInstallment, int]:
        return await self._db.read(_installments, loan.loan_id, loan.principal.currency, after, limit)

    async def record_disbursement(self, disbursement_id: str, loan_id: str, at: datetime) -> None:
        await self._db.write(_record_disbursement, disbursement_id, loan_id, at)

    async def cancel_disbursement(self, disbursement_id: str) -> None:
        await self._db.write(_cancel_disbursement, disbursement_id)
