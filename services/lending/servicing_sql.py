"""Installments and repayments in the lending context's own database: loaded and saved for a set
of loans in a fixed number of statements (a collection chunk of 500 loans costs what one
repayment does), deciding nothing. What a payment takes, when a loan is paid off and which
installment is overdue are decided by the use cases' units (repaying.py) with the domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from common.db.base import Row, Tx, stored
from common.db.idempotency import refusal_text
from common.db.keyset import Page, keyset_page
from common.errors import ReasonedError
from common.idempotency import IdempotencyKey
from services.lending.domain import Repayment, RepaymentStatus, ScheduledInstallment
from services.lending.rows import (
    INSTALLMENT_COLUMNS,
    REFUSED,
    REPAYMENT_COLUMNS,
    STATE_COLUMNS,
    allocation_of,
    parts_json,
    repayment_of,
    scheduled_of,
    state_of,
)
from services.lending.schedule import Installment
from services.lending.servicing import Allocation, InstallmentState

_KEY_COLUMNS = "scope, request_id, operation, fingerprint"


def marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


class Installments:
    """The installments of loans, in one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def states_of(self, loan_ids: Sequence[str]) -> dict[str, list[InstallmentState]]:
        states: dict[str, list[InstallmentState]] = {loan_id: [] for loan_id in loan_ids}
        if loan_ids:
            rows = await self._tx.fetchall(
                f"SELECT {STATE_COLUMNS} FROM installments WHERE loan_id IN ({marks(loan_ids)}) ORDER BY loan_id, number",
                *loan_ids,
            )
            for row in rows:
                states[row["loan_id"]].append(state_of(row))
        return states

    async def states(self, loan_id: str) -> list[InstallmentState]:
        return (await self.states_of([loan_id]))[loan_id]

    async def page(self, loan_id: str, currency: str, after: int, limit: int) -> Page[ScheduledInstallment, int]:
        return await keyset_page(
            self._tx,
            f"SELECT {STATE_COLUMNS} FROM installments",
            "loan_id = ?",
            [loan_id],
            after,
            limit,
            lambda row: scheduled_of(row, currency),
            key="number",
        )

    async def add_schedule(self, loan_id: str, schedule: tuple[Installment, ...]) -> None:
        outstanding, rows = sum(i.principal_minor for i in schedule), []
        for installment in schedule:
            outstanding -= installment.principal_minor
            start = installment.period_start.isoformat() if installment.period_start else None
            rows.append(
                (
                    loan_id,
                    installment.number,
                    installment.due_date.isoformat(),
                    installment.principal_minor,
                    installment.interest_minor,
                    outstanding,
                    start,
                )
            )
        await self._tx.executemany(f"INSERT INTO installments ({INSTALLMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    async def apply(self, applied: Sequence[tuple[str, Allocation]], sign: int) -> None:
        """Adds payments' parts to their loans' installments (sign -1: takes them back)."""
        await self._tx.executemany(
            "UPDATE installments SET paid_penalty_minor = paid_penalty_minor + ?, paid_interest_minor = paid_interest_minor + ?,"
            " paid_principal_minor = paid_principal_minor + ?, waived_interest_minor = waived_interest_minor + ?"
            " WHERE loan_id = ? AND number = ?",
            [
                (sign * p.penalty, sign * p.interest, sign * p.principal, sign * p.waived_interest, loan_id, p.number)
                for loan_id, allocation in applied
                for p in allocation.parts
            ],
        )

    async def mark_overdue(self, marking: Sequence[tuple[str, int]], late_fee_minor: int) -> list[tuple[str, int]]:
        """Marks these installments overdue from their due date with the late fee, each once: the
        ones this unit marked (a concurrent run may have marked the others first)."""
        if not marking:
            return []
        pairs = ", ".join("(?, ?)" for _ in marking)
        marked = await self._tx.fetchall(
            "UPDATE installments SET overdue_since = due_date, penalty_minor = penalty_minor + ?"
            f" WHERE overdue_since IS NULL AND (loan_id, number) IN (VALUES {pairs}) RETURNING loan_id, number",
            late_fee_minor,
            *(value for pair in marking for value in pair),
        )
        return sorted((row["loan_id"], row["number"]) for row in marked)


@dataclass(frozen=True)
class Asked:
    """What an earlier request with a key left: its repayment, or the refusal it was answered."""

    key: IdempotencyKey
    operation: str
    fingerprint: str
    repayment: Repayment | None  # None when it was refused: a refused row is kept only for its answer
    refusal: str | None


def _key_of(row: Row) -> IdempotencyKey:
    return IdempotencyKey(row["request_id"], row["operation"], row["fingerprint"], row["scope"])


class Repayments:
    """Repayments (each row also holds its request's key), in one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, repayment_id: str) -> Repayment:
        row = await self._tx.fetchone(f"SELECT {REPAYMENT_COLUMNS} FROM repayments WHERE repayment_id = ?", repayment_id)
        return repayment_of(stored(row, repayment_id))

    async def asked_before(self, keys: Sequence[IdempotencyKey]) -> dict[str, Asked]:
        """What these keys asked for before, by request id (their operation and fingerprint as
        stored: the caller compares)."""
        if not keys:
            return {}
        scopes = sorted({k.scope for k in keys})
        rows = await self._tx.fetchall(
            f"SELECT {REPAYMENT_COLUMNS}, {_KEY_COLUMNS}, refusal FROM repayments"
            f" WHERE scope IN ({marks(scopes)}) AND request_id IN ({marks(keys)})",
            *scopes,
            *(k.request_id for k in keys),
        )
        wanted = {(k.scope, k.request_id): k for k in keys}
        found = {}
        for row in rows:
            key = wanted.get((row["scope"], row["request_id"]))
            if key is not None:
                refused = row["status"] == REFUSED
                repayment = None if refused else repayment_of(row)
                found[key.request_id] = Asked(
                    key, row["operation"], row["fingerprint"], repayment, row["refusal"] if refused else None
                )
        return found

    async def add_pending(self, asked: Sequence[tuple[Repayment, IdempotencyKey]]) -> None:
        await self._tx.executemany(
            f"INSERT INTO repayments ({REPAYMENT_COLUMNS}, {_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.repayment_id,
                    r.loan_id,
                    r.kind.value,
                    r.status.value,
                    r.amount.minor,
                    r.amount.currency,
                    parts_json(r.allocation),
                    r.created_at.isoformat(),
                    k.scope,
                    k.request_id,
                    k.operation,
                    k.fingerprint,
                )
                for r, k in asked
            ],
        )

    async def add_refused(self, refused: Repayment, key: IdempotencyKey, refusal: ReasonedError) -> bool:
        """Keeps `refusal` as the key's answer, as a REJECTED repayment that took nothing; False
        when the key holds an answer already (an identical request got there first)."""
        kept = await self._tx.execute(
            f"INSERT INTO repayments ({REPAYMENT_COLUMNS}, {_KEY_COLUMNS}, refusal)"
            " VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, request_id) DO NOTHING",
            refused.repayment_id,
            refused.loan_id,
            refused.kind.value,
            REFUSED,
            refused.amount.minor,
            refused.amount.currency,
            refused.created_at.isoformat(),
            key.scope,
            key.request_id,
            key.operation,
            key.fingerprint,
            refusal_text(refusal),
        )
        return kept == 1

    async def post(self, repayment_ids: Sequence[str], at: datetime) -> list[tuple[Repayment, IdempotencyKey]]:
        """The repayments still PENDING become POSTED (a conditional write: idempotent), with their keys."""
        if not repayment_ids:
            return []
        rows = await self._tx.fetchall(
            f"UPDATE repayments SET status = ?, posted_at = ? WHERE status = ? AND repayment_id IN ({marks(repayment_ids)})"
            f" RETURNING {REPAYMENT_COLUMNS}, {_KEY_COLUMNS}",
            RepaymentStatus.POSTED.value,
            at.isoformat(),
            RepaymentStatus.PENDING.value,
            *repayment_ids,
        )
        return [(repayment_of(row), _key_of(row)) for row in rows]

    async def pending_on(self, loan_ids: Sequence[str]) -> set[str]:
        """The loans of `loan_ids` with a payment still pending."""
        if not loan_ids:
            return set()
        rows = await self._tx.fetchall(
            f"SELECT DISTINCT loan_id FROM repayments WHERE status = ? AND loan_id IN ({marks(loan_ids)})",
            RepaymentStatus.PENDING.value,
            *loan_ids,
        )
        return {row["loan_id"] for row in rows}

    async def drop_pending(self, repayment_ids: Sequence[str]) -> list[tuple[str, Allocation]]:
        """Deletes the repayments still PENDING: the parts each had taken, by loan."""
        if not repayment_ids:
            return []
        rows = await self._tx.fetchall(
            f"DELETE FROM repayments WHERE status = ? AND repayment_id IN ({marks(repayment_ids)}) RETURNING loan_id, parts_json",
            RepaymentStatus.PENDING.value,
            *repayment_ids,
        )
        return [(row["loan_id"], allocation_of(row["parts_json"])) for row in rows]

    async def refuse(self, repayment_id: str, refusal: ReasonedError) -> tuple[str, Allocation] | None:
        """A PENDING repayment keeps `refusal` (its request_id's answer from now on): the parts it
        had taken, or None when it was no longer pending."""
        row = await self._tx.fetchone(
            "UPDATE repayments SET status = ?, refusal = ? WHERE status = ? AND repayment_id = ? RETURNING loan_id, parts_json",
            REFUSED,
            refusal_text(refusal),
            RepaymentStatus.PENDING.value,
            repayment_id,
        )
        return (row["loan_id"], allocation_of(row["parts_json"])) if row is not None else None

    async def stale_pending(self, before: datetime, limit: int) -> list[Repayment]:
        rows = await self._tx.fetchall(
            f"SELECT {REPAYMENT_COLUMNS} FROM repayments WHERE status = ? AND created_at < ? ORDER BY created_at LIMIT ?",
            RepaymentStatus.PENDING.value,
            before.isoformat(),
            limit,
        )
        return [repayment_of(row) for row in rows]

    async def page(self, loan_id: str, after: int, limit: int) -> Page[Repayment, int]:
        select = f"SELECT seq, {REPAYMENT_COLUMNS} FROM repayments"
        return await keyset_page(self._tx, select, "loan_id = ? AND status != ?", [loan_id, REFUSED], after, limit, repayment_of)
