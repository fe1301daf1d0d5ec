"""Payments in the payment context's own database; the store-and-forward queue is this table.

`Payments` loads and saves payments in one transaction and decides nothing: the use cases hold
the unit (`PaymentUnit`), ask the domain, and save what it decided."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from common.audit import record_change
from common.db.base import Row, Tx, aggregate, row_lock
from common.db.databases import ContextDatabase
from common.db.keyset import Page, keyset_page
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from common.errors import Aborted
from common.filtering import Filter
from common.money import Money
from services.payment.domain import Batch, BatchLine, Beneficiary, Payment, PaymentStatus
from services.payment.messages import OUTGOING

_COLUMNS = (
    "payment_id, debtor_account_id, beneficiary_account_id, beneficiary_iban, beneficiary_name, amount_minor,"
    " currency, reference, status, failure_reason, hold_id, transfer_id, created_epoch, created_at, updated_at,"
    " authorized_by, attempts, next_attempt_at, refund_first_approver, refund_decided_by, operator_retries"
)
BATCH_RESERVE_WAIT = 30  # a batch line without its hold is the worker's after 30 times the usual wait
_MARKS = ", ".join("?" * len(_COLUMNS.split(",")))  # one placeholder per column
COUNTED = (PaymentStatus.PENDING.value, PaymentStatus.QUEUED.value, PaymentStatus.COMPLETED.value)


def _payment(row: Row) -> Payment:
    return Payment(
        payment_id=row["payment_id"],
        debtor_account_id=row["debtor_account_id"],
        beneficiary=Beneficiary(row["beneficiary_account_id"], row["beneficiary_iban"], row["beneficiary_name"]),
        amount=Money(row["currency"], row["amount_minor"]),
        reference=row["reference"],
        status=PaymentStatus(row["status"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        failure_reason=row["failure_reason"],
        hold_id=row["hold_id"],
        transfer_id=row["transfer_id"],
        authorized_by=row["authorized_by"],
        attempts=row["attempts"],
        next_attempt_at=datetime.fromisoformat(row["next_attempt_at"]) if row["next_attempt_at"] else None,
        refund_first_approver=row["refund_first_approver"],
        refund_decided_by=row["refund_decided_by"],
        operator_retries=row["operator_retries"],
    )


def _when(at: datetime | None) -> str:
    return at.isoformat() if at else ""


def _values(p: Payment) -> tuple[object, ...]:
    b = p.beneficiary
    return (
        p.payment_id,
        p.debtor_account_id,
        b.account_id,
        b.iban,
        b.name,
        p.amount.minor,
        p.amount.currency,
        p.reference,
        p.status.value,
        p.failure_reason,
        p.hold_id,
        p.transfer_id,
        p.created_at.timestamp(),
        p.created_at.isoformat(),
        p.updated_at.isoformat(),
        p.authorized_by,
        p.attempts,
        _when(p.next_attempt_at),
        p.refund_first_approver,
        p.refund_decided_by,
        p.operator_retries,
    )


@dataclass(frozen=True)
class Window:
    """What a debtor paid in a fraud-screening window: how many payments, and their total."""

    count: int
    total_minor: int


class Payments:
    """The payments of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, payment_id: str) -> Payment | None:
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM payments WHERE payment_id = ?", payment_id)
        return _payment(row) if row else None

    async def locked(self, payment_id: str) -> Payment | None:
        """The payment, locked until the unit ends (SQLite: the unit holds the write lock already):
        what a step decides on it stands until the unit saves (an identical request's step waits)."""
        lock = row_lock(self._tx)
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM payments WHERE payment_id = ?{lock}", payment_id)
        return _payment(row) if row else None

    async def window(self, debtor: str, currency: str, since: datetime) -> Window:
        """The debtor's payments in `currency` since `since` that count against its limits."""
        row = await aggregate(
            self._tx,
            "SELECT COUNT(*) AS n, COALESCE(SUM(amount_minor), 0) AS total FROM payments"
            " WHERE debtor_account_id = ? AND currency = ? AND created_epoch >= ? AND batch_id = ''"
            f" AND status IN ({', '.join('?' * len(COUNTED))})",
            debtor,
            currency,
            since.timestamp(),
            *COUNTED,
        )
        return Window(int(row["n"]), int(row["total"]))

    async def add(self, payment: Payment) -> None:
        await self._tx.execute(f"INSERT INTO payments ({_COLUMNS}) VALUES ({_MARKS})", *_values(payment))

    async def move(self, payment: Payment, expected: PaymentStatus) -> None:
        """Saves `payment` over the state the caller read under the lock (`locked`); the condition is
        a guard only: one that trips is a bug, ABORTED, never a payment moved twice."""
        changed = await self._tx.execute(
            "UPDATE payments SET status = ?, failure_reason = ?, hold_id = ?, transfer_id = ?, updated_at = ?, attempts = ?,"
            " next_attempt_at = ?, refund_first_approver = ?, refund_decided_by = ?, operator_retries = ? WHERE payment_id = ? AND status = ?",
            payment.status.value,
            payment.failure_reason,
            payment.hold_id,
            payment.transfer_id,
            payment.updated_at.isoformat(),
            payment.attempts,
            _when(payment.next_attempt_at),
            payment.refund_first_approver,
            payment.refund_decided_by,
            payment.operator_retries,
            payment.payment_id,
            expected.value,
        )
        if changed != 1:
            raise Aborted("PAYMENT_MOVED_ON", "the payment changed meanwhile", {"payment_id": payment.payment_id})
        await record_change(self._tx, f"AdvancePayment.{payment.status.value}", payment.payment_id)

    async def page(self, debtor: str, matching: Filter, after: int, limit: int) -> Page[Payment, int]:
        """A page of the debtor's payments (every debtor's: empty) that match the filter, oldest first."""
        condition, params = matching.sql()
        if debtor:
            condition, params = f"debtor_account_id = ? AND {condition}", [debtor, *params]
        return await keyset_page(self._tx, f"SELECT seq, {_COLUMNS} FROM payments", condition, params, after, limit, _payment)

    async def due(self, stale_before: datetime, now: datetime, external: bool, limit: int) -> list[Payment]:
        """Queued payments (unless `external` is off: the network is not being called), and pending
        ones a crash or a lost answer left behind, refunds decided included; those retried soonest
        first. A batch's line whose hold is not placed yet waits BATCH_RESERVE_WAIT times longer:
        its batch reserves every line's funds in one step (a large one takes a while, and a replay
        of the batch places what is missing), and the worker looking its hold up first would close
        the hold's request id for good."""
        batch_stale_before = now - (now - stale_before) * BATCH_RESERVE_WAIT
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM payments WHERE ((status = ? AND ?) OR ((status = ? OR (status = ? AND refund_decided_by <> ''))"
            " AND updated_at < ?)) AND next_attempt_at <= ? AND NOT (batch_id <> '' AND hold_id = '' AND updated_at >= ?)"
            " ORDER BY next_attempt_at, seq LIMIT ?",
            PaymentStatus.QUEUED.value,
            external,
            PaymentStatus.PENDING.value,
            PaymentStatus.NEEDS_OPERATOR.value,
            stale_before.isoformat(),
            now.isoformat(),
            batch_stale_before.isoformat(),
            limit,
        )
        return [_payment(r) for r in rows]

    async def external(self, currency: str) -> list[Payment]:
        """Every external payment (in `currency`, if given): what the reconciliation compares."""
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM payments WHERE beneficiary_iban <> '' AND (? = '' OR currency = ?) ORDER BY seq",
            currency,
            currency,
        )
        return [_payment(r) for r in rows]


_BATCH_COLUMNS = "batch_id, debtor_account_id, message_id, line_count, total_minor, currency, failure_reason, created_at"
_LINE_COLUMNS = f"batch_line, end_to_end_id, {_COLUMNS}"


def _batch(row: Row, counts: dict[PaymentStatus, int]) -> Batch:
    return Batch(
        batch_id=row["batch_id"],
        debtor_account_id=row["debtor_account_id"],
        message_id=row["message_id"],
        line_count=row["line_count"],
        total=Money(row["currency"], row["total_minor"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        failure_reason=row["failure_reason"],
        counts=counts,
    )


@dataclass(frozen=True)
class StoredLine:
    """A batch's line and its payment."""

    number: int
    end_to_end_id: str
    payment: Payment


def _line(row: Row) -> StoredLine:
    return StoredLine(row["batch_line"], row["end_to_end_id"], _payment(row))


class Batches:
    """The batches of one transaction, and their lines (payments that name them)."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def add(self, batch: Batch, lines: list[tuple[BatchLine, Payment]], authorized_by: str) -> None:
        """The batch and every line's payment, in two statements."""
        await self._tx.execute(
            f"INSERT INTO payment_batches ({_BATCH_COLUMNS}, authorized_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch.batch_id,
            batch.debtor_account_id,
            batch.message_id,
            batch.line_count,
            batch.total.minor,
            batch.total.currency,
            batch.failure_reason,
            batch.created_at.isoformat(),
            authorized_by,
        )
        await self._tx.executemany(
            f"INSERT INTO payments ({_COLUMNS}, batch_id, batch_line, end_to_end_id) VALUES ({_MARKS}, ?, ?, ?)",
            [(*_values(p), batch.batch_id, line.number, line.end_to_end_id) for line, p in lines],
        )

    async def get(self, batch_id: str) -> Batch | None:
        row = await self._tx.fetchone(f"SELECT {_BATCH_COLUMNS} FROM payment_batches WHERE batch_id = ?", batch_id)
        if row is None:
            return None
        counted = await self._tx.fetchall(
            "SELECT status, COUNT(*) AS n FROM payments WHERE batch_id = ? GROUP BY status", batch_id
        )
        return _batch(row, {PaymentStatus(r["status"]): int(r["n"]) for r in counted})

    async def unfinished(self, batch_id: str) -> list[Payment]:
        """The lines still on their way (pending or queued), in line order."""
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM payments WHERE batch_id = ? AND status IN (?, ?) ORDER BY batch_line",
            batch_id,
            PaymentStatus.PENDING.value,
            PaymentStatus.QUEUED.value,
        )
        return [_payment(r) for r in rows]

    async def held(self, holds: list[tuple[str, str]]) -> None:
        """Records each line's hold (payment id, hold id) on a line that has none yet."""
        await self._tx.executemany(
            "UPDATE payments SET hold_id = ? WHERE payment_id = ? AND hold_id = '' AND status = ?",
            [(hold_id, payment_id, PaymentStatus.PENDING.value) for payment_id, hold_id in holds],
        )

    async def refuse(self, batch_id: str, reason: str, at: datetime) -> None:
        """The batch refused whole: it keeps the reason, and every line still pending fails with it."""
        await self._tx.execute("UPDATE payment_batches SET failure_reason = ? WHERE batch_id = ?", reason, batch_id)
        await self._tx.execute(
            "UPDATE payments SET status = ?, failure_reason = ?, updated_at = ? WHERE batch_id = ? AND status = ?",
            PaymentStatus.FAILED.value,
            reason,
            at.isoformat(),
            batch_id,
            PaymentStatus.PENDING.value,
        )
        await record_change(self._tx, "RefusePaymentBatch", batch_id)

    async def lines(self, batch_id: str, after: int, limit: int) -> Page[StoredLine, int]:
        return await keyset_page(
            self._tx, f"SELECT seq, {_LINE_COLUMNS} FROM payments", "batch_id = ?", [batch_id], after, limit, _line
        )


class PaymentUnit(Unit):
    """One transaction of the payment context."""

    outgoing = OUTGOING

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.payments = Payments(tx)
        self.batches = Batches(tx)


@og_component()
class PaymentUnits(BaseComponent, Units[PaymentUnit]):
    """The payment context's units of work, on its own database."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, PaymentUnit)
