"""Transactional outbox: an event row written in the same transaction as the state change, and a
relay that moves committed rows to the bus. Delivery is at-least-once: a crash between publishing
and marking the row re-publishes it, and consumers' inboxes make that harmless."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from common.db.base import Tx, aggregate
from common.db.databases import ContextDatabase
from common.di import BaseComponent, ContextInfo, og_component
from common.events.bus import EventBus
from common.events.envelope import Envelope
from common.faults import crash_point
from common.grpc.call_context import request_id_var
from common.ids import new_id
from common.observability.metrics import OUTBOX_LAG
from common.observability.tracing import producing

OUTBOX = "outbox"  # the channel a transaction that adds events notifies
POLL_SECONDS = 1.0  # the relay looks without being woken this often (a notice lost with its connection)
FOLLOWER_SECONDS = 1.0  # a replica that does not hold the outbox asks again this often
RETENTION = timedelta(days=7)  # published events are kept this long (for diagnosis), then purged
PURGE_EVERY_SECONDS = 600.0
PURGE_BATCH = 1000
BATCH = 100


async def append_events(tx: Tx, events: Sequence[Message]) -> list[str]:
    """Adds `events` to the outbox inside the caller's transaction, in one statement; their ids."""
    if not events:
        return []
    request_id = request_id_var.get()
    headers = {"request_id": request_id} if request_id else {}
    occurred_at = datetime.now(UTC).isoformat()
    types = sorted({event.DESCRIPTOR.full_name for event in events})
    with producing(", ".join(types), headers):  # the trace goes on through the events to their consumers
        envelopes = [
            Envelope(
                event_id=new_id("evt"),
                event_type=event.DESCRIPTOR.full_name,
                payload=event.SerializeToString(),
                occurred_at=occurred_at,
                headers=headers,
            )
            for event in events
        ]
        await tx.executemany(
            "INSERT INTO outbox (event_id, event_type, payload, headers, occurred_at) VALUES (?, ?, ?, ?, ?)",
            [(e.event_id, e.event_type, e.payload, e.headers_json(), e.occurred_at) for e in envelopes],
        )
    tx.notify(OUTBOX)
    return [e.event_id for e in envelopes]


async def append_envelopes(tx: Tx, envelopes: Sequence[Envelope]) -> None:
    """Adds envelopes as they are (ids, headers and all) to the outbox inside the caller's
    transaction: an event published once before, sent again (an operator's replay)."""
    await tx.executemany(
        "INSERT INTO outbox (event_id, event_type, payload, headers, occurred_at) VALUES (?, ?, ?, ?, ?)",
        [(e.event_id, e.event_type, e.payload, e.headers_json(), e.occurred_at) for e in envelopes],
    )
    tx.notify(OUTBOX)


async def _unpublished(tx: Tx, limit: int) -> list[tuple[int, Envelope]]:
    rows = await tx.fetchall(
        "SELECT seq, event_id, event_type, payload, headers, occurred_at FROM outbox"
        " WHERE published_at IS NULL ORDER BY seq LIMIT ?",
        limit,
    )
    return [
        (
            row["seq"],
            Envelope(row["event_id"], row["event_type"], bytes(row["payload"]), row["occurred_at"], json.loads(row["headers"])),
        )
        for row in rows
    ]


async def _mark_published(tx: Tx, seqs: list[int], at: str) -> None:
    """Marks exactly the events that went out. Not "every seq up to the last one": on PostgreSQL a
    transaction can commit a lower seq after a higher one was read, and marking by range would
    mark that event published without it ever having been sent (found by tests/faults)."""
    placeholders = ", ".join("?" for _ in seqs)
    await tx.execute(f"UPDATE outbox SET published_at = ? WHERE seq IN ({placeholders})", at, *seqs)


async def _purge_batch(tx: Tx, cutoff: str, limit: int) -> int:
    return await tx.execute(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE published_at IS NOT NULL AND published_at < ?"
        " ORDER BY seq LIMIT ?)",
        cutoff,
        limit,
    )


async def _count_unpublished(tx: Tx) -> int:
    return int((await aggregate(tx, "SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL"))["n"])


@og_component()
class OutboxRelay(BaseComponent):
    """Moves a context's committed events to the bus, in commit order, a batch at a time.

    It wakes when a transaction that added events commits, in this process or (on PostgreSQL,
    LISTEN/NOTIFY) in any replica, so that events usually leave within a millisecond; and it
    looks every POLL_SECONDS anyway (events committed before a crash, a notice lost).
    """

    def __init__(self, db: ContextDatabase, bus: EventBus, context: ContextInfo) -> None:
        self._db = db
        self._bus = bus
        self._context = context.name
        self._task: asyncio.Task[None] | None = None
        self._purged_at = float("-inf")

    async def start(self) -> None:
        """After every context subscribed: nothing is published to a bus nobody listens to yet."""
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._context}")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def purge(self, older_than: datetime) -> int:
        """Deletes events published before `older_than`, a batch per transaction (the outbox is
        a relay, not an archive: the bus and the consumers' inboxes keep what they need)."""
        cutoff, purged = older_than.isoformat(), 0
        while (deleted := await self._db.write(_purge_batch, cutoff, PURGE_BATCH)) > 0:
            purged += deleted
        return purged

    async def _purge_when_due(self) -> None:
        now = time.monotonic()
        if now - self._purged_at >= PURGE_EVERY_SECONDS:
            self._purged_at = now
            await self.purge(datetime.now(UTC) - RETENTION)

    async def _leading(self) -> bool:
        """One relay per context, whatever its replicas: two would publish the same events twice."""
        try:
            return await self._db.lead("outbox")
        except Exception:  # noqa: BLE001 - the database is down: nobody relays until it is back
            return False

    async def _unpublished_count(self) -> int:
        try:
            return await self._db.read(_count_unpublished)
        except Exception:  # noqa: BLE001 - the database itself is down: the lag is unknown
            return -1

    async def drain(self) -> int:
        """Publishes everything committed so far, in order; returns how many events went out.

        A batch goes out in one round trip, in order, and is marked in one statement after it
        was published; if publishing fails, the whole batch goes out again at the next pass (at
        least once: consumers' inboxes drop the repeats).
        """
        sent = 0
        while True:
            batch = await self._db.read(_unpublished, BATCH)
            if batch:
                crash_point("relay.before_publish")
                await self._bus.publish_many([envelope for _, envelope in batch])
                await self._db.write(_mark_published, [seq for seq, _ in batch], datetime.now(UTC).isoformat())
                sent += len(batch)
            if len(batch) < BATCH:
                return sent

    async def _run(self) -> None:
        lag = OUTBOX_LAG.labels(self._context)
        while True:
            if not await self._leading():
                await asyncio.sleep(FOLLOWER_SECONDS)
                continue
            try:
                await self.drain()
                lag.set(0)  # everything committed before this pass is out
                await self._purge_when_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.exception("outbox relay of %s failed; retrying", self._context)
                lag.set(await self._unpublished_count())
                await asyncio.sleep(0.5)
            await self._db.notified(OUTBOX, POLL_SECONDS)
