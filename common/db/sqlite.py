"""SQLite that never blocks the event loop, at one thread hop per batch of work.

Each unit of work is `async def fn(tx, *args)` (common.db.base); on the database thread it is
driven synchronously, since an SqliteTx never suspends. Units are coalesced and sent to a database
thread together:
- writes run on the single writer thread (SQLite has one writer anyway) as a group commit: one
  BEGIN IMMEDIATE ... COMMIT around the batch, a SAVEPOINT around each unit, so a failing unit
  rolls back alone and the others still commit; no caller hears "done" before the COMMIT, and
  the COMMIT returns once the WAL is synced to disk (synchronous=FULL): one sync per batch;
- reads run on a small pool of reader threads (WAL lets them run beside the writer), a batch
  sharing one read snapshot.
Coalescing matters in Python: under load a thread hop costs far more than a short query, because
the database thread waits for the GIL.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from common.db.base import Row, Settled, UnitOfWork
from common.db.migrations import Migration, apply_migrations, load_migrations
from common.db.notices import Notices

R = TypeVar("R")
MAX_BATCH = 128

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: in WAL mode the WAL is synced at every COMMIT, so what a caller is told is done survives
    # an OS crash or power loss (NORMAL syncs only at checkpoints: a process crash loses nothing, a
    # power loss the last commits). The writer commits a batch of units at once: one sync a batch.
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


class SqliteTx:
    """A Tx over an SQLite connection; its coroutines complete without suspending."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, context: str, notified: set[str]) -> None:
        self._conn = conn
        self.context = context
        self._notified = notified

    def notify(self, channel: str) -> None:
        self._notified.add(channel)  # one process owns the file: waking this process's waiters is all

    async def execute(self, sql: str, *params: Any) -> int:
        return self._conn.execute(sql, params).rowcount

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._conn.executemany(sql, rows)


def _drive(unit: _Unit, conn: sqlite3.Connection) -> Any:
    """Runs a unit of work's coroutine to completion on this thread, in the context variables of
    the task that submitted it (who is calling, the request id: what the outbox and the audit
    record read)."""
    coro = unit.fn(SqliteTx(conn, unit.database, unit.notified), *unit.args)
    try:
        unit.variables.run(coro.send, None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError(f"{unit.fn.__qualname__} awaited something other than its transaction")


@dataclass
class _Unit:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    database: str  # the context whose database this is
    variables: contextvars.Context
    outcome: tuple[bool, Any] = (False, None)
    notified: set[str] = field(default_factory=set)  # channels to wake once the unit commits


def _run_reads(conn: sqlite3.Connection, units: list[_Unit]) -> None:
    conn.execute("BEGIN")
    try:
        for unit in units:
            try:
                unit.outcome = (True, _drive(unit, conn))
            except Exception as exc:  # noqa: BLE001 - handed to the caller's future
                unit.outcome = (False, exc)
    finally:
        conn.execute("COMMIT")


def _run_writes(conn: sqlite3.Connection, units: list[_Unit]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                unit.outcome = (True, _drive(unit, conn))
                conn.execute("RELEASE unit")
            except Settled as settled:  # its writes stand; its caller hears the error
                conn.execute("RELEASE unit")
                unit.outcome = (False, settled.error)
            except Exception as exc:  # noqa: BLE001 - this unit alone is rolled back
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                unit.outcome = (False, exc)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class _Batcher:
    """Sends units to `pool` in batches, at most `capacity` batches in flight.

    While every thread is busy, new units wait and join the next batch: under load batches grow
    by themselves (group commit), at low load a unit goes out at once.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        capacity: int,
        connection: Callable[[], sqlite3.Connection],
        runner: Callable[[sqlite3.Connection, list[_Unit]], None],
        name: str,
        notices: Notices,
    ) -> None:
        self._name = name
        self._notices = notices
        self._pool = pool
        self._capacity = capacity
        self._connection = connection
        self._runner = runner
        self._pending: list[_Unit] = []
        self._in_flight = 0
        self._flush_scheduled = False

    def submit(self, fn: UnitOfWork[R], args: tuple[Any, ...]) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        unit = _Unit(fn, args, loop.create_future(), self._name, contextvars.copy_context())
        self._pending.append(unit)
        if self._in_flight < self._capacity and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop)
        return unit.future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        while self._pending and self._in_flight < self._capacity:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._in_flight += 1
            done = self._pool.submit(self._run, batch)
            done.add_done_callback(partial(self._finished_soon, loop, batch))

    def _run(self, batch: list[_Unit]) -> None:
        """On the database thread: the thread's own connection runs the whole batch."""
        self._runner(self._connection(), batch)

    def _finished_soon(self, loop: asyncio.AbstractEventLoop, batch: list[_Unit], done: Future[None]) -> None:
        """On the database thread: hands the finished batch back to the event loop."""
        loop.call_soon_threadsafe(self._finished, loop, batch, done)

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[_Unit], done: Future[None]) -> None:
        self._in_flight -= 1
        _settle(batch, done)
        if done.exception() is None:
            self._notices.post(channel for unit in batch if unit.outcome[0] for channel in unit.notified)
        if self._pending:
            self._flush(loop)


def _settle(batch: list[_Unit], done: Future[None]) -> None:
    """Hands each caller its own outcome; a batch-level failure (COMMIT failed) fails them all."""
    failure = done.exception()
    for unit in batch:
        if unit.future.done():  # the caller was cancelled meanwhile
            continue
        if failure is not None:
            unit.future.set_exception(failure)
        elif unit.outcome[0]:
            unit.future.set_result(unit.outcome[1])
        else:
            unit.future.set_exception(unit.outcome[1])


class SqliteDatabase:
    """One SQLite file with a writer thread and `readers` reader threads."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        self._readers = readers
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._writes: _Batcher | None = None
        self._reads: _Batcher | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._notices = Notices()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        with self._lock:
            self._connections.append(conn)
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    async def open(self, migrations: list[Migration]) -> None:
        """Starts the threads and brings the schema up to date (framework tables, then the context's)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-w-{self.path.stem}")
        self._reader_pool = ThreadPoolExecutor(self._readers, thread_name_prefix=f"sqlite-r-{self.path.stem}")
        self._writes = _Batcher(self._writer_pool, 1, self._thread_connection, _run_writes, self.path.stem, self._notices)
        self._reads = _Batcher(
            self._reader_pool, self._readers, self._thread_connection, _run_reads, self.path.stem, self._notices
        )
        await apply_migrations(self, load_migrations("common.db", self.dialect) + list(migrations))

    async def lead(self, role: str) -> bool:
        return True  # one process owns an SQLite file (embedded mode)

    async def notified(self, channel: str, within: float) -> bool:
        return await self._notices.wait(channel, within)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for pool in (self._writer_pool, self._reader_pool):
            if pool is not None:
                await loop.run_in_executor(None, partial(pool.shutdown, wait=True))
        self._writer_pool = self._reader_pool = None
        self._writes = self._reads = None
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def _batcher(self, batcher: _Batcher | None) -> _Batcher:
        if batcher is None:
            raise RuntimeError(f"database {self.path} is not open")
        return batcher

    async def read(self, fn: UnitOfWork[R], *args: Any) -> R:
        """Runs `fn(tx, *args)` on a reader thread, inside a read snapshot."""
        return await self._batcher(self._reads).submit(fn, args)

    async def write(self, fn: UnitOfWork[R], *args: Any) -> R:
        """Runs `fn(tx, *args)` atomically: all its changes commit, or (on exception) none do."""
        return await self._batcher(self._writes).submit(fn, args)
