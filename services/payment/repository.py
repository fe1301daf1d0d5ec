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
from services.payment.domain import Beneficiary, Payment, PaymentStatus
from services.payment.messages import OUTGOING

_COLUMNS = (
    "payment_id, debtor_account_id, beneficiary_account_id, beneficiary_iban, beneficiary_name, amount_minor,"
    " currency, reference, status, failure_reason, hold_id, transfer_id, created_epoch, created_at, updated_at,"
    " authorized_by, attempts, next_attempt_at, refund_first_approver, refund_decided_by"
)
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
            f" WHERE debtor_account_id = ? AND currency = ? AND created_epoch >= ? AND status IN ({', '.join('?' * len(COUNTED))})",
            debtor,
            currency,
            since.timestamp(),
            *COUNTED,
        )
        return Window(int(row["n"]), int(row["total"]))

    async def add(self, payment: Payment) -> None:
        await self._tx.execute(f"INSERT INTO payments ({_COLUMNS}) VALUES ({', '.join('?' * 20)})", *_values(payment))

    async def move(self, payment: Payment, expected: PaymentStatus) -> None:
        """Saves `payment` over the state the caller read under the lock (`locked`); the condition is
        a guard only: one that trips is a bug, ABORTED, never a payment moved twice."""
        changed = await self._tx.execute(
            "UPDATE payments SET status = ?, failure_reason = ?, hold_id = ?, transfer_id = ?, updated_at = ?, attempts = ?,"
            " next_attempt_at = ?, refund_first_approver = ?, refund_decided_by = ? WHERE payment_id = ? AND status = ?",
            payment.status.value,
            payment.failure_reason,
            payment.hold_id,
            payment.transfer_id,
            payment.updated_at.isoformat(),
            payment.attempts,
            _when(payment.next_attempt_at),
            payment.refund_first_approver,
            payment.refund_decided_by,
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
        ones a crash or a lost answer left behind, refunds decided included; those retried soonest first."""
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM payments WHERE ((status = ? AND ?) OR ((status = ? OR (status = ? AND refund_decided_by <> ''))"
            " AND updated_at < ?)) AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?",
            PaymentStatus.QUEUED.value,
            external,
            PaymentStatus.PENDING.value,
            PaymentStatus.NEEDS_OPERATOR.value,
            stale_before.isoformat(),
            now.isoformat(),
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


class PaymentUnit(Unit):
    """One transaction of the payment context."""

    outgoing = OUTGOING

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.payments = Payments(tx)


@og_component()
class PaymentUnits(BaseComponent, Units[PaymentUnit]):
    """The payment context's units of work, on its own database."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, PaymentUnit)
