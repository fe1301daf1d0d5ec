"""A batch job walks its data in chunks after a cursor; after each chunk the cursor and the
counters advance in one transaction. A run killed at any point resumes from the last recorded
cursor and ends with the same totals as an uninterrupted run, provided each chunk is idempotent
and reports what is done for its range (not only what it did just now). A completed run is not
run again. Concurrency is bounded: one chunk at a time per run.

The request that started a run (its claimant: a caller's request id) is the run's: asked again,
while the run goes on or after it completed, it answers with the run as it ends, as the first
asking did; any other request is refused (the run is in progress, or it ran once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import Aborted, PreconditionFailed
from common.faults import crash_point

RUNNING, COMPLETED = "RUNNING", "COMPLETED"


@dataclass(frozen=True)
class ChunkResult:
    processed: int
    amount_minor: int
    last_cursor: str
    done: bool
    total: int | None = None  # known on the first chunk


@dataclass(frozen=True)
class BatchProgress:
    """The BatchResult as it stands."""

    job: str
    run_key: str
    status: str
    cursor: str
    processed: int
    errors: int
    total: int
    amount_minor: int
    started_at: datetime
    elapsed_ms: int


Chunk = Callable[[str], Awaitable[ChunkResult]]
OnComplete = Callable[[Tx, BatchProgress], Awaitable[None]]
_COLUMNS = "job, run_key, status, cursor, processed, errors, total, amount_minor, started_at, elapsed_ms"


def _progress(row: Row) -> BatchProgress:
    return BatchProgress(
        row["job"],
        row["run_key"],
        row["status"],
        row["cursor"],
        row["processed"],
        row["errors"],
        row["total"],
        row["amount_minor"],
        datetime.fromisoformat(row["started_at"]),
        row["elapsed_ms"],
    )


async def _load(tx: Tx, job: str, key: str) -> BatchProgress | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM batch_runs WHERE job = ? AND run_key = ?", job, key)
    return _progress(row) if row else None


async def _open(tx: Tx, job: str, key: str, claimant: str) -> tuple[BatchProgress, str]:
    """The run (a new one claimed by `claimant`), and who claimed it."""
    await tx.execute(
        f"INSERT INTO batch_runs ({_COLUMNS}, claimant) VALUES (?, ?, ?, '', 0, 0, 0, 0, ?, 0, ?)"
        " ON CONFLICT (job, run_key) DO NOTHING",
        job,
        key,
        RUNNING,
        datetime.now(UTC).isoformat(),
        claimant,
    )
    row = await tx.fetchone("SELECT claimant FROM batch_runs WHERE job = ? AND run_key = ?", job, key)
    return stored(await _load(tx, job, key), key), str(row["claimant"]) if row else ""


async def _advance(
    tx: Tx, before: BatchProgress, chunk: ChunkResult, elapsed_ms: int, on_complete: OnComplete | None
) -> BatchProgress:
    status = COMPLETED if chunk.done else RUNNING
    moved = await tx.execute(
        "UPDATE batch_runs SET status = ?, cursor = ?, processed = processed + ?, amount_minor = amount_minor + ?,"
        " total = ?, elapsed_ms = elapsed_ms + ? WHERE job = ? AND run_key = ? AND cursor = ? AND status = ?",
        status,
        chunk.last_cursor,
        chunk.processed,
        chunk.amount_minor,
        chunk.total if chunk.total is not None else before.total,
        elapsed_ms,
        before.job,
        before.run_key,
        before.cursor,
        RUNNING,
    )
    if moved != 1:
        raise Aborted("BATCH_MOVED_ON", "another runner advanced this run", {"run": before.run_key})
    after = await _load(tx, before.job, before.run_key)
    assert after is not None
    if status == COMPLETED and on_complete is not None:
        await on_complete(tx, after)
    return after


async def _page(tx: Tx, job: str, before_key: str, limit: int) -> Page[BatchProgress, str]:
    """Runs of `job`, newest key first, before `before_key` ('' for the newest)."""
    select = f"SELECT {_COLUMNS} FROM batch_runs"
    return await keyset_page(tx, select, "job = ?", [job], before_key, limit, _progress, key="run_key", descending=True)


@og_component()
class BatchRunner(BaseComponent):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db
        self._active: dict[tuple[str, str], asyncio.Event] = {}  # the runs this process runs, set when they stop

    async def run(
        self,
        job: str,
        key: str,
        chunk: Chunk,
        on_complete: OnComplete | None = None,
        already_completed: str = "RUN_ALREADY_COMPLETED",
        claimant: str = "",
    ) -> AsyncIterator[BatchProgress]:
        """Runs (or resumes) a run, yielding its progress after every chunk; `claimant` asking
        again for the run it started gets the run as it ends."""
        progress, claimed_by = await self._db.write(_open, job, key, claimant)
        ours = bool(claimant) and claimed_by == claimant
        if ours and ((job, key) in self._active or progress.status == COMPLETED):
            yield await self._ended(job, key)
            return
        if (job, key) in self._active:
            raise PreconditionFailed("RUN_IN_PROGRESS", f"{job} {key} is running", {"run": key})
        if progress.status == COMPLETED:
            raise PreconditionFailed(
                already_completed,
                f"{job} for {key} has already completed; it runs once",
                {"run": key, "processed": str(progress.processed)},
            )
        self._active[(job, key)] = stopped = asyncio.Event()
        try:
            yield progress
            while progress.status != COMPLETED:
                started = time.monotonic()
                result = await chunk(progress.cursor)
                crash_point("batch.after_chunk")
                elapsed = int((time.monotonic() - started) * 1000)
                progress = await self._db.write(_advance, progress, result, elapsed, on_complete)
                yield progress
                await asyncio.sleep(0)
        finally:
            del self._active[(job, key)]
            stopped.set()

    async def _ended(self, job: str, key: str) -> BatchProgress:
        """The run once this process no longer runs it (completed, or stopped to be resumed)."""
        running = self._active.get((job, key))
        if running is not None:
            await running.wait()
        return stored(await self._db.read(_load, job, key), key)

    async def get(self, job: str, key: str) -> BatchProgress | None:
        return await self._db.read(_load, job, key)

    async def page(self, job: str, before_key: str, limit: int) -> Page[BatchProgress, str]:
        return await self._db.read(_page, job, before_key, limit)
