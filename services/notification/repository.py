"""Notifications and preferences in the context's own database."""

from __future__ import annotations

from datetime import UTC, datetime

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.keyset import Page, keyset_page
from common.db.units import Unit, Units
from common.di import BaseComponent, og_component
from services.notification.domain import Kind, Notification, Preferences, Status

DELIVERY = "delivery"  # notified when a notification to send is stored: the courier wakes
_COLUMNS = (
    "seq, notification_id, customer_id, kind, subject, body, source_event_id, status, attempts, failure_reason,"
    " created_at, sent_at, due_epoch"
)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _notification(row: Row) -> Notification:
    due = row["due_epoch"]
    return Notification(
        row["notification_id"],
        row["customer_id"],
        Kind(row["kind"]),
        row["subject"],
        row["body"],
        row["source_event_id"],
        Status(row["status"]),
        datetime.fromisoformat(row["created_at"]),
        int(row["attempts"]),
        row["failure_reason"],
        _when(row["sent_at"]),
        datetime.fromtimestamp(due, UTC) if due is not None else None,
        int(row["seq"]),
    )


class Notifications:
    """Notifications and preferences of one transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def get(self, notification_id: str) -> Notification | None:
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM notifications WHERE notification_id = ?", notification_id)
        return _notification(row) if row else None

    async def add(self, n: Notification) -> tuple[Notification, bool]:
        """Stores `n` unless its source event already made one; (the stored one, whether it is new)."""
        inserted = await self._tx.execute(
            "INSERT INTO notifications (notification_id, customer_id, kind, subject, body, source_event_id, status, attempts,"
            " failure_reason, created_at, sent_at, due_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', ?, NULL, ?)"
            " ON CONFLICT (source_event_id) DO NOTHING",
            n.notification_id,
            n.customer_id,
            n.kind.value,
            n.subject,
            n.body,
            n.source_event_id,
            n.status.value,
            n.created_at.isoformat(),
            n.created_at.timestamp() if n.status is Status.PENDING else None,
        )
        if inserted and n.status is Status.PENDING:
            self._tx.notify(DELIVERY)
        row = await self._tx.fetchone(f"SELECT {_COLUMNS} FROM notifications WHERE source_event_id = ?", n.source_event_id)
        return _notification(stored(row, n.source_event_id)), inserted == 1

    async def settle(self, n: Notification) -> bool:
        """Records a delivery attempt of a PENDING notification; False if it was settled meanwhile."""
        changed = await self._tx.execute(
            "UPDATE notifications SET status = ?, attempts = ?, failure_reason = ?, sent_at = ?, due_epoch = ?"
            " WHERE notification_id = ? AND status = ? AND attempts = ?",
            n.status.value,
            n.attempts,
            n.failure_reason,
            n.sent_at.isoformat() if n.sent_at else None,
            n.next_attempt_at.timestamp() if n.next_attempt_at and n.status is Status.PENDING else None,
            n.notification_id,
            Status.PENDING.value,
            n.attempts - 1,
        )
        return changed == 1

    async def due(self, now: datetime, limit: int) -> list[Notification]:
        rows = await self._tx.fetchall(
            f"SELECT {_COLUMNS} FROM notifications WHERE status = ? AND due_epoch <= ? ORDER BY due_epoch, seq LIMIT ?",
            Status.PENDING.value,
            now.timestamp(),
            limit,
        )
        return [_notification(r) for r in rows]

    async def page(self, customer_id: str, after: int, limit: int) -> Page[Notification, int]:
        where, params = ("customer_id = ?", [customer_id]) if customer_id else ("1 = 1", [])
        return await keyset_page(self._tx, f"SELECT {_COLUMNS} FROM notifications", where, params, after, limit, _notification)

    async def preferences(self, customer_id: str) -> Preferences:
        row = await self._tx.fetchone("SELECT opted_out FROM notification_preferences WHERE customer_id = ?", customer_id)
        kinds = row["opted_out"].split(",") if row and row["opted_out"] else []
        return Preferences(customer_id, frozenset(Kind(k) for k in kinds))

    async def set_preferences(self, prefs: Preferences, at: datetime) -> None:
        await self._tx.execute(
            "INSERT INTO notification_preferences (customer_id, opted_out, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (customer_id) DO UPDATE SET opted_out = excluded.opted_out, updated_at = excluded.updated_at",
            prefs.customer_id,
            ",".join(sorted(prefs.opted_out)),
            at.isoformat(),
        )


class NotificationUnit(Unit):
    """One transaction of the notification context."""

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx)
        self.notifications = Notifications(tx)


@og_component()
class NotificationUnits(BaseComponent, Units[NotificationUnit]):
    """The notification context's units of work, on its own database; `waiting` wakes the courier."""

    def __init__(self, db: ContextDatabase) -> None:
        Units.__init__(self, db, NotificationUnit)
        self._database = db

    async def waiting(self, within: float) -> bool:
        """Waits until a notification is stored to be sent (True) or `within` seconds pass."""
        return await self._database.notified(DELIVERY, within)
