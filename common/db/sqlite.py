"""SQLite that never blocks the event loop.

Each unit of work is one synchronous function run on a database thread: writes on a single writer
thread inside BEGIN IMMEDIATE ... COMMIT (SQLite has one writer anyway), reads on a small pool of
reader threads (WAL lets them run beside the writer). One thread hop per unit of work, not one per
statement, keeps the cost per RPC low.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, ParamSpec, TypeVar

from common.db.idempotency import FRAMEWORK_SQL
from common.db.migrations import Migration, apply_migrations

FRAMEWORK_MIGRATIONS = [Migration(1, "0001_idempotency_keys.sql", FRAMEWORK_SQL)]

R = TypeVar("R")
P = ParamSpec("P")

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # durable across process crashes in WAL mode
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


class SqliteDatabase:
    """One SQLite file with a writer thread and `readers` reader threads."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        self._readers = readers
        self._writer_pool: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

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
        await self._run(self._writer_pool, partial(apply_migrations, scope="framework", migrations=FRAMEWORK_MIGRATIONS))
        await self._run(self._writer_pool, partial(apply_migrations, scope="context", migrations=migrations))

    async def close(self) -> None:
        for pool in (self._writer_pool, self._reader_pool):
            if pool is not None:
                await asyncio.get_running_loop().run_in_executor(None, partial(pool.shutdown, wait=True))
        self._writer_pool = self._reader_pool = None
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    async def _run(self, pool: ThreadPoolExecutor | None, fn: Callable[[sqlite3.Connection], R]) -> R:
        if pool is None:
            raise RuntimeError(f"database {self.path} is not open")
        return await asyncio.get_running_loop().run_in_executor(pool, lambda: fn(self._thread_connection()))

    async def read(self, fn: Callable[..., R], *args: object) -> R:
        """Runs `fn(conn, *args)` on a reader thread (a consistent snapshot for its duration)."""
        return await self._run(self._reader_pool, lambda conn: _in_read_transaction(conn, fn, args))

    async def write(self, fn: Callable[..., R], *args: object) -> R:
        """Runs `fn(conn, *args)` in one write transaction; any exception rolls it all back."""
        return await self._run(self._writer_pool, lambda conn: _in_write_transaction(conn, fn, args))


def _in_read_transaction(conn: sqlite3.Connection, fn: Callable[..., R], args: tuple[object, ...]) -> R:
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("COMMIT")


def _in_write_transaction(conn: sqlite3.Connection, fn: Callable[..., R], args: tuple[object, ...]) -> R:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
