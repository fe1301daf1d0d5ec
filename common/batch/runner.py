"""A batch job walks its data in chunks after a cursor; after each chunk the cursor and the
counters advance in one transaction. A run killed at any point resumes from the last recorded
cursor and ends with the same totals as an uninterrupted run, provided each chunk is idempotent
and reports what is done for its range (not only what it did just now). A completed run is not
run again. Concurrency is bounded: one chunk at a time per run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from common.db.base import Row, Tx, stored
from common.db.databases import ContextDatabase
from common.db.idempotency import claim, once
from common.db.keyset import Page, keyset_page
from common.di import BaseComponent, og_component
from common.errors import Aborted, PreconditionFailed
from common.faults import crash_point
from common.idempotency import IdempotencyKey

RUNNING, COMPLETED = "RUNNING", "COMPLETED"
RUN_IN_PROGRESS = "RUN_IN_PROGRESS"  # the refusal of a run another request drives here now
_TURN_SECONDS = 0.02  # how often a replay looks whether the request it repeats still drives the run


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


async def _open(tx: Tx, job: str, key: str, request: IdempotencyKey | None, already_completed: str) -> BatchProgress:
    """The run, opened or as it stands. Under a request's key, once: a key that opened (or
    resumed) it answers with it again, completed or not; a new key on a completed run is refused,
    and the refusal stays that key's answer. Without one: the run as it stands."""
    if request is None:
        return await _run(tx, job, key)

    async def opened() -> BatchProgress:
        progress = await _run(tx, job, key)
        if progress.status == COMPLETED:
            raise _completed(progress, already_completed)
        return progress

    async def replayed(_: str) -> BatchProgress:
        return stored(await _load(tx, job, key), key)

    return await once(tx, request, key, opened, replayed)


def _completed(progress: BatchProgress, reason: str) -> PreconditionFailed:
    return PreconditionFailed(
        reason,
        f"{progress.job} for {progress.run_key} has already completed; it runs once",
        {"run": progress.run_key, "processed": str(progress.processed)},
    )


async def _run(tx: Tx, job: str, key: str) -> BatchProgress:
    await tx.execute(
        f"INSERT INTO batch_runs ({_COLUMNS}) VALUES (?, ?, ?, '', 0, 0, 0, 0, ?, 0) ON CONFLICT (job, run_key) DO NOTHING",
        job,
        key,
        RUNNING,
        datetime.now(UTC).isoformat(),
    )
    return stored(await _load(tx, job, key), key)


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


@dataclass
class _Driver:
    """The task driving a run here, the request it drives it for, and whether the run was opened
    (before that, the request may yet be refused or answered from a completed run: no run goes on)."""

    task: asyncio.Task[object] | None
    request: IdempotencyKey | None
    opened: bool = False


@og_component()
class BatchRunner(BaseComponent):
    def __init__(self, db: ContextDatabase) -> None:
        self._db = db
        self._active: dict[tuple[str, str], _Driver] = {}  # each run driven here

    def _driven(self, run: tuple[str, str]) -> bool:
        """Whether a task of this process drives the run now. A caller that went away (a deadline,
        a cancel) leaves its stream suspended, never to be resumed, while its task has ended: the
        run is free for the next request, not RUN_IN_PROGRESS until the stream is collected."""
        if run not in self._active:
            return False
        task = self._active[run].task
        return task is None or not task.done()

    async def _wait_turn(self, run: tuple[str, str], request: IdempotencyKey | None) -> None:
        """Refuses a run driven here now (RUN_IN_PROGRESS), but to a replay of the request that
        drives it (its caller gave up and asked again): that one waits for it, and answers as it.
        A request being opened is waited for too: it may be only a rival refused on a completed
        run, and the request that completed it must not hear RUN_IN_PROGRESS meanwhile."""
        while self._driven(run):
            driver = self._active[run]
            if driver.opened and (request is None or driver.request != request):
                raise PreconditionFailed(RUN_IN_PROGRESS, f"{run[0]} {run[1]} is running", {"run": run[1]})
            await asyncio.sleep(_TURN_SECONDS)

    async def run(
        self,
        job: str,
        key: str,
        chunk: Chunk,
        on_complete: OnComplete | None = None,
        already_completed: str = "RUN_ALREADY_COMPLETED",
        request: IdempotencyKey | None = None,
    ) -> AsyncIterator[BatchProgress]:
        """Runs (or resumes) a run, yielding its progress after every chunk. A completed run is
        refused, except to the `request` that ran it: its replay is answered with the run."""
        await self._wait_turn((job, key), request)
        # Marked before the first await: identical requests arriving meanwhile wait for this one.
        driver = self._active[(job, key)] = _Driver(asyncio.current_task(), request)
        try:
            progress = await self._db.write(_open, job, key, request, already_completed)
            if progress.status == COMPLETED:
                if request is None:
                    raise _completed(progress, already_completed)
                yield progress
                return
            driver.opened = True
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
            if self._active.get((job, key)) is driver:  # a stream collected late leaves its successor's mark
                del self._active[(job, key)]

    async def get(self, job: str, key: str) -> BatchProgress | None:
        return await self._db.read(_load, job, key)

    async def claim(self, request: IdempotencyKey, resource: str) -> str:
        """What `request` is for: `resource` claimed now, or what an identical request claimed
        before (a key used for another request is refused: IDEMPOTENCY_KEY_REUSED). For an
        operation of many runs, so that its replay runs the same ones."""

        async def claimed(tx: Tx) -> str:
            return await claim(tx, request, resource) or resource

        return await self._db.write(claimed)

    async def page(self, job: str, before_key: str, limit: int) -> Page[BatchProgress, str]:
        return await self._db.read(_page, job, before_key, limit)
