"""One unit-of-work API for every database, so a repository is written once.

A unit of work is `async def fn(tx, *args)`. SQLite runs it on its database thread, driving the
coroutine synchronously (its Tx never really suspends), so there is no thread hop per statement;
PostgreSQL runs it on a psycopg async pool. SQL is written once with `?` placeholders in the
dialect both engines share (ON CONFLICT, RETURNING); each Tx adapts placeholders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from common.db.migrations import Migration

R = TypeVar("R")
T = TypeVar("T")
Row = Mapping[str, Any]


def stored(value: T | None, what: str) -> T:
    """A row the transaction knows is there (just written, or named by an idempotency record in
    the same transaction): missing, it is a broken database, not a caller's mistake."""
    if value is None:
        raise LookupError(f"{what} should be stored but is not")
    return value


def row_lock(tx: Tx, strength: str = "NO KEY UPDATE") -> str:
    """The clause that locks the rows a SELECT reads until the unit ends, on PostgreSQL; nothing on
    SQLite, where a writing unit holds the database's write lock already. NO KEY UPDATE by
    default: foreign-key checks of other units' inserts do not wait on it."""
    return f" FOR {strength}" if tx.dialect == "postgres" else ""


async def aggregate(tx: Tx, sql: str, *params: Any) -> Row:
    """The one row an aggregate query (COUNT, SUM, MAX without GROUP BY) always answers."""
    return stored(await tx.fetchone(sql, *params), "the row of an aggregate query")


class Settled(Exception):
    """Raised out of a unit of work whose writes stand although its caller gets `error`: a
    refusal recorded on the idempotency key the unit claimed commits, and the caller hears the
    refusal. Every Database commits such a unit and raises `error` to the caller."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Tx(Protocol):
    """A transaction: statements of one unit of work, committed together or not at all."""

    dialect: str
    context: str  # the context whose database it is

    async def execute(self, sql: str, *params: Any) -> int:
        """Runs a statement; returns the number of rows it changed."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement for many rows: the set-based path of bulk work."""

    def notify(self, channel: str) -> None:
        """Wakes whoever waits on `channel` of this database, in any process, once this
        transaction commits (nobody if it rolls back)."""


UnitOfWork = Callable[..., Awaitable[R]]


class Database(Protocol):
    """A context's database. `write` units are atomic; `read` units see one snapshot."""

    dialect: str

    async def open(self, migrations: list[Migration]) -> None: ...

    async def close(self) -> None: ...

    async def read(self, fn: UnitOfWork[R], *args: Any) -> R: ...

    async def write(self, fn: UnitOfWork[R], *args: Any) -> R: ...

    async def notified(self, channel: str, within: float) -> bool:
        """Waits until a transaction that notified `channel` commits (True) or `within` seconds
        pass (False). Notices are not queued: many commits may be one wake-up."""

    async def lead(self, role: str) -> bool:
        """Whether this process holds `role` (e.g. "outbox") for this database: at most one of
        the processes sharing the database holds it at a time, and another takes it over when
        the holder dies. Background work that must run once, not once per replica, asks first."""
