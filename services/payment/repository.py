"""Payments in the payment context's own database; the store-and-forward queue is this table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.audit import record_change
from common.db.base import Row, Tx, aggregate, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import Aborted
from common.idempotency import IdempotencyKey
from common.money import Money
from services.payment.adapters import OUTGOING
from services.payment.domain import Beneficiary, FraudRules, Payment, PaymentEvent, PaymentStatus, events_of, screen

_COLUMNS = (
    "payment_id, debtor_account_id, beneficiary_account_id, beneficiary_iban, beneficiary_name, amount_minor,"
    " currency, reference, status, failure_reason, hold_id, transfer_id, created_epoch, created_at, updated_at,"
    " authorized_by, attempts, next_attempt_at"
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
    )


async def _select(tx: Tx, payment_id: str) -> Payment | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM payments WHERE payment_id = ?", payment_id)
    return _payment(row) if row else None


@dataclass(frozen=True)
class Created:
    payment: Payment
    replayed: bool


async def _create(tx: Tx, payment: Payment, key: IdempotencyKey, rules: FraudRules) -> Created:
    """Claims the key, screens against the debtor's window and stores the payment, atomically."""
    replayed = await claim(tx, key, payment.payment_id)
    if replayed is not None:
        return Created(stored(await _select(tx, replayed), replayed), True)
    since = payment.created_at.timestamp() - rules.window_seconds
    window = await aggregate(
        tx,
        "SELECT COUNT(*) AS n, COALESCE(SUM(amount_minor), 0) AS total FROM payments"
        f" WHERE debtor_account_id = ? AND currency = ? AND created_epoch >= ? AND status IN ({', '.join('?' * len(COUNTED))})",
        payment.debtor_account_id,
        payment.amount.currency,
        since,
        *COUNTED,
    )
    reason = screen(payment.amount, int(window["n"]), int(window["total"]), rules)
    if reason:
        payment = payment.moved_to(PaymentStatus.REJECTED, payment.created_at, failure_reason=reason)
    await tx.execute(f"INSERT INTO payments ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", *_values(payment))
    await OUTGOING.append(tx, events_of(payment))
    return Created(payment, False)


async def _advance(tx: Tx, payment: Payment, expected: PaymentStatus, events: list[PaymentEvent]) -> Payment:
    """Moves a payment on only from the state the caller saw (two workers never both move it)."""
    changed = await tx.execute(
        "UPDATE payments SET status = ?, failure_reason = ?, hold_id = ?, transfer_id = ?, updated_at = ?, attempts = ?,"
        " next_attempt_at = ? WHERE payment_id = ? AND status = ?",
        payment.status.value,
        payment.failure_reason,
        payment.hold_id,
        payment.transfer_id,
        payment.updated_at.isoformat(),
        payment.attempts,
        _when(payment.next_attempt_at),
        payment.payment_id,
        expected.value,
    )
    if changed != 1:
        raise Aborted("PAYMENT_MOVED_ON", "the payment changed meanwhile", {"payment_id": payment.payment_id})
    await OUTGOING.append(tx, events)
    await record_change(tx, f"AdvancePayment.{payment.status.value}", payment.payment_id)
    return payment


async def _page(tx: Tx, debtor: str, after: int, limit: int) -> Page[Payment, int]:
    return await keyset_page(
        tx, f"SELECT seq, {_COLUMNS} FROM payments", "debtor_account_id = ?", [debtor], after, limit, _payment
    )


async def _due(tx: Tx, stale_before: str, now: str, external: bool, limit: int) -> list[Payment]:
    """Queued payments (unless `external` is off: the network is not being called), and pending
    ones a crash or a lost answer left behind; those retried soonest first."""
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM payments WHERE ((status = ? AND ?) OR (status = ? AND updated_at < ?))"
        " AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?",
        PaymentStatus.QUEUED.value,
        external,
        PaymentStatus.PENDING.value,
        stale_before,
        now,
        limit,
    )
    return [_payment(r) for r in rows]


async def _external(tx: Tx, currency: str) -> list[Payment]:
    """Every external payment (in `currency`, if given): what the reconciliation compares."""
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM payments WHERE beneficiary_iban <> '' AND (? = '' OR currency = ?) ORDER BY seq",
        currency,
        currency,
    )
    return [_payment(r) for r in rows]


class PaymentRepository(Protocol):
    async def create(self, payment: Payment, key: IdempotencyKey, rules: FraudRules) -> Created: ...

    async def advance(self, payment: Payment, expected: PaymentStatus, events: list[PaymentEvent]) -> Payment: ...

    async def get(self, payment_id: str) -> Payment | None: ...

    async def page(self, debtor: str, after: int, limit: int) -> Page[Payment, int]: ...

    async def due(self, stale_before: datetime, now: datetime, external: bool, limit: int) -> list[Payment]: ...

    async def external(self, currency: str) -> list[Payment]: ...


@og_component()
class SqlPaymentRepository(BaseComponent, PaymentRepository):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db

    async def create(self, payment: Payment, key: IdempotencyKey, rules: FraudRules) -> Created:
        return await self._db.write(_create, payment, key, rules)

    async def advance(self, payment: Payment, expected: PaymentStatus, events: list[PaymentEvent]) -> Payment:
        return await self._db.write(_advance, payment, expected, events)

    async def get(self, payment_id: str) -> Payment | None:
        return await self._db.read(_select, payment_id)

    async def page(self, debtor: str, after: int, limit: int) -> Page[Payment, int]:
        return await self._db.read(_page, debtor, after, limit)

    async def due(self, stale_before: datetime, now: datetime, external: bool, limit: int) -> list[Payment]:
        return await self._db.read(_due, stale_before.isoformat(), now.isoformat(), external, limit)

    async def external(self, currency: str) -> list[Payment]:
        return await self._db.read(_external, currency)
