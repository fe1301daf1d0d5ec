"""Work that must run once per database, not once per replica (the outbox relay), is led by one
process at a time: a PostgreSQL session advisory lock, taken over when the holder goes away."""

from __future__ import annotations

import asyncio
import time

from common.db.postgres import PostgresDatabase
from common.db.sqlite import SqliteDatabase
from tests.servers import PostgresServer


async def test_one_holder_per_schema_and_role_and_a_takeover_when_it_goes(postgres: PostgresServer) -> None:
    dsn = postgres.new_database()
    first, second, elsewhere = PostgresDatabase(dsn, "ctx"), PostgresDatabase(dsn, "ctx"), PostgresDatabase(dsn, "other")
    try:
        assert await first.lead("outbox")
        assert await first.lead("outbox"), "the holder keeps it"
        assert not await second.lead("outbox"), "a second replica of the same context does not"
        assert await second.lead("queue"), "another role is another lock"
        assert await elsewhere.lead("outbox"), "another context's schema is another lock"
        await first.close()  # the holder goes away (as with kill -9, its session ends)
        deadline = time.monotonic() + 5  # the server ends the session's backend (and its lock) a moment later
        while not await second.lead("outbox"):
            assert time.monotonic() < deadline, "the other replica takes over"
            await asyncio.sleep(0.05)
    finally:
        for db in (second, elsewhere):
            await db.close()


async def test_sqlite_is_one_process_and_always_leads(tmp_path) -> None:
    assert await SqliteDatabase(tmp_path / "x.db").lead("outbox")
