"""Published events leave the outbox after the retention period; unpublished ones never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.config import Settings
from common.db.base import Tx
from common.db.databases import ContextDatabase, Databases
from common.di import ContextInfo
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay, append_events
from ogpgy.customer.v1.events_pb2 import CustomerUpdated

RETENTION = ContextInfo("retention", "tests")  # the package has no migrations: only the framework's tables


async def _events(tx: Tx, n: int) -> None:
    await append_events(tx, [CustomerUpdated(customer_id=f"cus_{i}") for i in range(n)])


async def _published(tx: Tx, published_at: str, first: int, last: int) -> None:
    await tx.execute("UPDATE outbox SET published_at = ? WHERE seq BETWEEN ? AND ?", published_at, first, last)


async def _counts(tx: Tx) -> tuple[int, int]:
    row = await tx.fetchone("SELECT COUNT(*) AS total, COUNT(published_at) AS published FROM outbox")
    assert row is not None
    return int(row["total"]), int(row["published"])


async def test_only_published_events_older_than_the_cutoff_are_purged(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    db = ContextDatabase(Databases(settings), RETENTION)
    await db.initialize()
    bus = EventBus(settings)
    await bus.initialize()
    relay = OutboxRelay(db, bus, RETENTION)
    try:
        await db.write(_events, 2500)
        now = datetime.now(UTC)
        await db.write(_published, (now - timedelta(days=30)).isoformat(), 1, 2200)  # old and published
        await db.write(_published, (now - timedelta(days=1)).isoformat(), 2201, 2300)  # recently published
        purged = await relay.purge(now - timedelta(days=7))
        assert purged == 2200, "in several batches of 1000"
        assert await db.read(_counts) == (300, 100), "recent and unpublished events stay"
    finally:
        await bus.shutdown()
        await db.shutdown()
