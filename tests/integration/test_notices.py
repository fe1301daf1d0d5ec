"""A commit that notifies a channel wakes its waiters, on both engines; on PostgreSQL also those of
another process sharing the schema (LISTEN/NOTIFY: here a second database object with its own
connections, as a replica has), and a unit that rolls back wakes nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.db.base import Database, Tx
from common.db.postgres import PostgresDatabase
from common.db.sqlite import SqliteDatabase
from tests.servers import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Database, Database]:
    """The database a write goes to, and the one whose waiter should wake (the same one on SQLite,
    which one process owns; another replica's on PostgreSQL)."""
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path / "notices.db")
        return db, db
    dsn = request.getfixturevalue("postgres").new_database()
    return PostgresDatabase(dsn, "notices"), PostgresDatabase(dsn, "notices")


async def _notifying(tx: Tx, channel: str) -> None:
    await tx.execute("CREATE TABLE IF NOT EXISTS marks (n INTEGER)")
    tx.notify(channel)


async def _notifying_then_failing(tx: Tx, channel: str) -> None:
    tx.notify(channel)
    raise RuntimeError("rolled back")


async def test_a_commit_wakes_the_waiters_of_its_channel_and_a_rollback_none(pair: tuple[Database, Database]) -> None:
    writer, waiter = pair
    await writer.open([])
    if waiter is not writer:
        await waiter.open([])
    try:
        assert not await waiter.notified("outbox", 0.2), "nothing committed yet (and the waiter now listens)"
        with pytest.raises(RuntimeError):
            await writer.write(_notifying_then_failing, "outbox")
        assert not await waiter.notified("outbox", 0.5), "a unit that rolled back wakes nobody"
        await writer.write(_notifying, "other")
        assert not await waiter.notified("outbox", 0.5), "another channel's commit does not wake this one"
        await writer.write(_notifying, "outbox")
        assert await waiter.notified("outbox", 10)
    finally:
        await writer.close()
        if waiter is not writer:
            await waiter.close()


async def test_a_waiter_listens_again_after_losing_its_connection(postgres: PostgresServer) -> None:
    dsn = postgres.new_database()
    writer, waiter = PostgresDatabase(dsn, "notices"), PostgresDatabase(dsn, "notices")
    await writer.open([])
    await waiter.open([])
    try:
        assert not await waiter.notified("outbox", 0.2)
        await writer.write(_terminate_listeners)
        woken = [await waiter.notified("outbox", 0.2) for _ in range(25)]
        assert True in woken, "listening again, the waiter is woken for what it may have missed"
        assert not await waiter.notified("outbox", 0.3)
        await writer.write(_notifying, "outbox")
        assert await waiter.notified("outbox", 10), "and hears the other process again"
    finally:
        await writer.close()
        await waiter.close()


async def _terminate_listeners(tx: Tx) -> None:
    await tx.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'"
    )
