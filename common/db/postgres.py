"""PostgreSQL through a psycopg 3 async pool; one schema per context."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from common.db.base import Row, Settled, UnitOfWork
from common.db.migrations import Migration, apply_migrations, load_migrations
from common.db.notices import Notices
from common.errors import Unavailable

R = TypeVar("R")
# A unique violation is retried too: it means a concurrent unit inserted the same key first, and
# the re-run sees the winner (an idempotent replay) instead of failing.
_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.errors.UniqueViolation)
_ATTEMPTS = 5
_LEASE_CHECK_SECONDS = 2.0  # a lock holder re-checks its connection this often
_RECONNECTS = 6  # about 6 s of backoff before a unit gives up on an unreachable server
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]*")


# Settings under which the server may lose a commit it acknowledged (an OS crash or a power loss
# rolls it back, or corrupts the cluster), with the values that keep it: PostgreSQL's defaults.
# synchronous_commit is kept by every value but off (local and remote_* flush locally too).
_DURABLE_SETTINGS = ("fsync", "full_page_writes")
_CONNECT_WITHIN = 30.0  # seconds, as the pool waits for its first connection


class VolatileDatabase(RuntimeError):
    """The PostgreSQL server may lose commits it acknowledged, and the bank was not told to accept that."""


@dataclass(frozen=True)
class ServerDurability:
    """What a server's sessions run with that may lose an acknowledged commit (empty: nothing)."""

    where: str  # host:port/database, never the password
    gaps: tuple[str, ...]  # e.g. ("fsync=off",)


async def server_durability(dsn: str) -> ServerDurability:
    """Reads, as a session of `dsn` sees them (server, database and role settings), the settings
    that decide whether a COMMIT the server answered survives an OS crash or power loss."""
    deadline = time.monotonic() + _CONNECT_WITHIN
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)  # a server still starting (a mesh starts it beside the bank)
    async with conn:
        names = (*_DURABLE_SETTINGS, "synchronous_commit")
        cursor = await conn.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in names))
        values = dict(zip(names, await cursor.fetchone() or (), strict=True))
        where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    gaps = [f"{name}={values[name]}" for name in _DURABLE_SETTINGS if values[name] != "on"]
    if values["synchronous_commit"] == "off":
        gaps.append("synchronous_commit=off")
    return ServerDurability(where, tuple(gaps))


@lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (our SQL never contains a literal `?` or `%`)."""
    return sql.replace("?", "%s")


class PostgresTx:
    dialect = "postgres"

    def __init__(self, conn: psycopg.AsyncConnection[Any], context: str) -> None:
        self._conn = conn
        self.context = context
        self.notified: set[str] = set()

    def notify(self, channel: str) -> None:
        self.notified.add(channel)

    async def execute(self, sql: str, *params: Any) -> int:
        cursor = await self._conn.execute(_placeholders(sql), params or None)
        return cursor.rowcount

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        cursor = await self._conn.execute(_placeholders(sql), params or None)
        return await cursor.fetchone()

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        cursor = await self._conn.execute(_placeholders(sql), params or None)
        return await cursor.fetchall()

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(_placeholders(sql), rows)


async def _settled(unit: Awaitable[R]) -> R | Settled:
    """The unit's result, or the Settled it raised (its transaction commits all the same)."""
    try:
        return await unit
    except Settled as settled:
        return settled


class PostgresDatabase:
    """A context's schema in a PostgreSQL database. Writes that lose a serialization or deadlock
    race are retried whole (units of work are written to be re-runnable)."""

    dialect = "postgres"

    def __init__(self, dsn: str, schema: str, *, max_size: int = 8) -> None:
        if not _SCHEMA.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        self.schema = schema
        self._dsn = dsn
        self._leases: dict[str, tuple[psycopg.AsyncConnection[Any] | None, float]] = {}
        self._notices = Notices()
        self._listening: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._listen_lock = asyncio.Lock()
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=5,  # waiting longer for a connection only piles calls up behind an outage
            open=False,
            kwargs={"row_factory": dict_row, "options": f"-c search_path={schema}"},
        )

    async def open(self, migrations: list[Migration]) -> None:
        async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
            await self._ensure_schema(conn)
        await self._pool.open(wait=True, timeout=30)
        await apply_migrations(self, load_migrations("common.db", self.dialect) + list(migrations))

    async def _ensure_schema(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Creates the schema only when it is missing. PostgreSQL checks the CREATE privilege on the
        database before it looks whether the schema exists, so `CREATE SCHEMA IF NOT EXISTS` is
        refused to a role that was given its schema but may create none (a least-privilege role)."""
        cursor = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        if await cursor.fetchone() is not None:
            return
        try:
            await conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
        except psycopg.errors.UniqueViolation:
            pass  # a replica starting at the same moment created it

    async def lead(self, role: str) -> bool:
        """A session advisory lock per (schema, role), held on a connection of its own: it is
        released when this process (or its connection) dies, and another replica takes it. The
        holder re-checks its connection now and then, since a server restart drops the lock."""
        conn, checked = self._leases.get(role, (None, 0.0))
        now = time.monotonic()
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                self._leases[role] = (conn, 0.0)
            elif checked and now - checked < _LEASE_CHECK_SECONDS:
                return True
            cursor = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"{self.schema}:{role}",))
            row = await cursor.fetchone()
            held = bool(row and row[0])
        except psycopg.Error:
            await self._drop_lease(role)
            return False
        self._leases[role] = (conn, now if held else 0.0)
        return held

    async def _drop_lease(self, role: str) -> None:
        conn, _ = self._leases.pop(role, (None, 0.0))
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        await self._stop_listening()
        for role in list(self._leases):
            await self._drop_lease(role)
        await self._pool.close()

    def _channel(self, channel: str) -> str:
        return f"{self.schema}.{channel}"

    async def notified(self, channel: str, within: float) -> bool:
        await self._listen(channel)
        return await self._notices.wait(channel, within)

    async def _listen(self, channel: str) -> None:
        """Hears `channel` from every process sharing the schema: a connection of its own LISTENs
        to every channel waited on. Lost with the server, it listens again at the next wait, and
        wakes the waiters of the channels it was deaf to (what was notified meanwhile is unknown)."""
        async with self._listen_lock:
            if channel in self._listening and self._listener is not None and not self._listener.done():
                return
            await self._stop_listening()
            deaf = set(self._listening)
            self._listening.add(channel)
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=2)
            except psycopg.Error:
                return
            try:
                for name in sorted(self._listening):
                    await conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self._channel(name))))
            except psycopg.Error:
                await conn.close()
                return
            self._listener = asyncio.create_task(self._hear(conn), name=f"listen-{self.schema}")
            self._notices.post(deaf)

    async def _hear(self, conn: psycopg.AsyncConnection[Any]) -> None:
        prefix = self._channel("")
        try:
            async for notice in conn.notifies():
                self._notices.post([notice.channel.removeprefix(prefix)])
        except psycopg.Error:
            pass  # the connection is gone: the next wait listens again
        finally:
            await conn.close()

    async def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None

    async def _run(self, fn: UnitOfWork[R], args: tuple[Any, ...]) -> R:
        lost = 0
        attempt = 0
        while True:
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    tx = PostgresTx(conn, self.schema)
                    outcome = await _settled(fn(tx, *args))
                    for channel in sorted(tx.notified):  # delivered by the server at COMMIT
                        await conn.execute("SELECT pg_notify(%s, '')", (self._channel(channel),))
                self._notices.post(tx.notified)  # this process's waiters need no round trip
                if isinstance(outcome, Settled):
                    raise outcome.error
                return outcome
            except _RETRYABLE:
                attempt += 1
                if attempt == _ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
            except (psycopg.OperationalError, PoolTimeout) as exc:
                # The server went away (restart, failover) or is unreachable. The pool drops the
                # broken connection; the unit runs again on a new one (units are re-runnable, and
                # state changes are idempotent by key, so a lost COMMIT answer is safe to repeat).
                lost += 1
                if lost > _RECONNECTS:
                    raise Unavailable("DATABASE_UNAVAILABLE", f"the {self.schema} database is unreachable; retry later") from exc
                await asyncio.sleep(min(0.1 * 2**lost, 2.0))

    async def read(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._run(fn, args)

    async def write(self, fn: UnitOfWork[R], *args: Any) -> R:
        return await self._run(fn, args)
