"""Loans and disbursement records in the lending context's own database, and the unit of work
that holds them with installments and repayments (servicing_sql.py).

Each repository loads and saves in one transaction and decides nothing: the use cases hold the
unit (`LendingUnit`), ask the domain (an approval's step, a payment's allocation, a loan paid
off), and save what it decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from common.audit import record_change
from common.db.base import Tx, row_lock
from common.db.databases import ContextDatabase
from common.db.keyset import Page, keyset_page
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from common.filtering import Filter, FilterField, Kind
from common.saga.operator import SagaRuns
from services.lending.domain import Loan, LoanStatus
from services.lending.messages import OUTGOING
from services.lending.rows import LOAN_COLUMNS, OPEN_INSTALLMENT, loan_of
from services.lending.servicing_sql import Installments, Repayments, marks

# The audit trail's name for each move of a loan (a move is a change no idempotency key claims).
_MOVES = {
    LoanStatus.DISBURSING: "DisburseLoan",
    LoanStatus.DISBURSED: "DisburseLoan.completed",
    LoanStatus.DISBURSEMENT_FAILED: "DisburseLoan.failed",
    LoanStatus.PAID_OFF: "RepayLoan.paid_off",
}

# What the operators' list of loans in arrears may be filtered on (common.filtering): the loan's
# position today as its view reports it (servicing.position: owed on installments due by today,
# days since the oldest of them fell due), its currency and customer. Only a DISBURSED loan owes
# (an approved loan has its schedule before the money leaves; one paid off owes nothing).
ARREARS_FIELDS = (
    FilterField("days_past_due", "days_past_due", Kind.INTEGER),
    FilterField("overdue_amount_minor", "overdue_minor", Kind.INTEGER),
    FilterField("currency", "currency", Kind.TEXT),
    FilterField("customer_id", "customer_id", Kind.TEXT),
)
_OWED = (
    "penalty_minor + interest_minor + principal_minor"
    " - paid_penalty_minor - paid_interest_minor - paid_principal_minor - waived_interest_minor"
)
# Days from a date column to a date parameter, as whole days, in each dialect.
_DAYS = {
    "sqlite": "CAST(julianday(?) - julianday(a.oldest_due) AS INTEGER)",
    "postgres": "(CAST(? AS DATE) - CAST(a.oldest_due AS DATE))",
}


@dataclass(frozen=True)
class ChunkLoan:
    """A loan of a collection chunk: where it is in the run, and the account it is paid from."""

    seq: int
    loan_id: str
    account_id: str


class Loans:
    """The loans of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, loan_id: str) -> Loan | None:
        row = await self._tx.fetchone(f"SELECT {LOAN_COLUMNS} FROM loans WHERE loan_id = ?", loan_id)
        return loan_of(row) if row else None

    async def locked(self, loan_id: str) -> Loan | None:
        """The loan, locked until the unit ends (SQLite: the unit holds the write lock already)."""
        lock = row_lock(self._tx, "UPDATE")
        row = await self._tx.fetchone(f"SELECT {LOAN_COLUMNS} FROM loans WHERE loan_id = ?{lock}", loan_id)
        return loan_of(row) if row else None

    async def of(self, loan_ids: Sequence[str]) -> dict[str, Loan]:
        rows = await self._tx.fetchall(f"SELECT {LOAN_COLUMNS} FROM loans WHERE loan_id IN ({marks(loan_ids)})", *loan_ids)
        return {row["loan_id"]: loan_of(row) for row in rows}

    async def active_locked(self, loan_ids: Sequence[str]) -> set[str]:
        """The loans of `loan_ids` still DISBURSED, locked in one order until the unit ends
        (payments on one loan are allocated one after another)."""
        if not loan_ids:
            return set()
        lock = " ORDER BY seq" + row_lock(self._tx, "UPDATE") if self._tx.dialect == "postgres" else ""
        rows = await self._tx.fetchall(
            f"SELECT loan_id FROM loans WHERE status = ? AND loan_id IN ({marks(loan_ids)}){lock}",
            LoanStatus.DISBURSED.value,
            *loan_ids,
        )
        return {row["loan_id"] for row in rows}

    async def add(self, loan: Loan) -> None:
        await self._tx.execute(
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

    async def save(self, loan: Loan, changes: dict[str, object]) -> None:
        """Saves the loan's status and time, and the columns `changes` names."""
        sets = "".join(f", {column} = ?" for column in changes)
        await self._tx.execute(
            f"UPDATE loans SET status = ?, updated_at = ?{sets} WHERE loan_id = ?",
            loan.status.value,
            loan.updated_at.isoformat(),
            *changes.values(),
            loan.loan_id,
        )

    async def move(self, loan_id: str, expected: LoanStatus, status: LoanStatus, at: datetime, request_id: str | None) -> bool:
        """Moves a loan on from `expected` only (a conditional write); False when it is no longer
        there (an idempotent no-op). `request_id`: the request that moved it, for the audit trail."""
        moved = await self._tx.execute(
            "UPDATE loans SET status = ?, updated_at = ? WHERE loan_id = ? AND status = ?",
            status.value,
            at.isoformat(),
            loan_id,
            expected.value,
        )
        if moved:
            await record_change(self._tx, _MOVES[status], loan_id, request_id)
        return moved == 1

    async def page(self, customer_id: str, after: int, limit: int) -> Page[Loan, int]:
        select = f"SELECT seq, {LOAN_COLUMNS} FROM loans"
        return await keyset_page(self._tx, select, "customer_id = ?", [customer_id], after, limit, loan_of)

    async def in_arrears(self, where: Filter, today: date, after: int, limit: int) -> Page[Loan, int]:
        """Loans owing something on installments due by `today` that match `where`, by seq: the
        position is computed per loan in one query (filtered on it), its rows read once."""
        condition, params = where.sql()
        select = (
            f"SELECT * FROM (SELECT l.*, a.overdue_minor, {_DAYS[self._tx.dialect]} AS days_past_due FROM loans l"
            f" JOIN (SELECT loan_id, MIN(due_date) AS oldest_due, SUM({_OWED}) AS overdue_minor FROM installments"
            f" WHERE due_date <= ? AND {OPEN_INSTALLMENT} GROUP BY loan_id) a ON a.loan_id = l.loan_id WHERE l.status = ?) arrears"
        )
        day = today.isoformat()
        return await keyset_page(
            self._tx, select, condition, [day, day, LoanStatus.DISBURSED.value, *params], after, limit, loan_of
        )

    async def chunk(self, currency: str, statuses: Sequence[LoanStatus], after_seq: int, limit: int) -> list[ChunkLoan]:
        rows = await self._tx.fetchall(
            f"SELECT seq, loan_id, account_id FROM loans WHERE currency = ? AND status IN ({marks(statuses)}) AND seq > ?"
            " ORDER BY seq LIMIT ?",
            currency,
            *(s.value for s in statuses),
            after_seq,
            limit,
        )
        return [ChunkLoan(row["seq"], row["loan_id"], row["account_id"]) for row in rows]

    async def count(self, currency: str, statuses: Sequence[LoanStatus]) -> int:
        row = await self._tx.fetchone(
            f"SELECT COUNT(*) AS n FROM loans WHERE currency = ? AND status IN ({marks(statuses)})",
            currency,
            *(s.value for s in statuses),
        )
        return int(row["n"]) if row else 0

    async def record_disbursement(self, disbursement_id: str, loan_id: str, at: datetime) -> None:
        await self._tx.execute(
            "INSERT INTO disbursements (disbursement_id, loan_id, status, created_at) VALUES (?, ?, 'ACTIVE', ?)"
            " ON CONFLICT (disbursement_id) DO NOTHING",
            disbursement_id,
            loan_id,
            at.isoformat(),
        )

    async def cancel_disbursement(self, disbursement_id: str) -> None:
        await self._tx.execute("UPDATE disbursements SET status = 'CANCELLED' WHERE disbursement_id = ?", disbursement_id)


class LendingUnit(Unit):
    """One transaction of the lending context."""

    outgoing = OUTGOING

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.loans = Loans(tx)
        self.installments = Installments(tx)
        self.repayments = Repayments(tx)
        self.sagas = SagaRuns(tx)


@og_component()
class LendingUnits(BaseComponent, Units[LendingUnit]):
    """The lending context's units of work, on its own database."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, LendingUnit)
