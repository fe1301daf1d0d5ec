"""Runs sagas from their durable log.

Before each step its intent is stored, after it its result; each step acts with a deterministic
idempotency key (saga id + step), so a step re-run after a crash never acts twice. A failed step
(a definite refusal, or a transient error that outlived its retries) turns the saga around: the
compensations of the steps that ran (or may have run) execute in reverse order, each retried with
backoff; one that keeps failing leaves the saga FAILED_NEEDS_OPERATOR. A process killed at any
point resumes where the log says, forward or backward, when it starts again.

With replicas, one process drives a saga at a time: it claims a lease on the saga's log row,
every write renews it and is refused once another owner took it over (fencing); a caller on
another replica waits for the result. A saga whose driver died is taken over when its lease runs
out, by whichever replica holds the "sagas" lease and looks every few seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from common.config import Settings
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.faults import crash_point
from common.grpc.call_context import deadline_var
from common.saga import log as sagalog
from common.saga.log import (
    COMPENSATED,
    COMPENSATING,
    COMPLETED,
    DONE,
    FAILED,
    FAILED_NEEDS_OPERATOR,
    PENDING,
    REFUSED,
    RUNNING,
    TERMINAL,
    UNDONE,
    Lease,
    LeaseLost,
)

Result = dict[str, str]
logger = logging.getLogger("ogpgy.saga")
LEASE_SECONDS = 15.0  # longer than any step with its retries; a dead driver's sagas wait this long
RESUME_SECONDS = 5.0  # how often the holder of the "sagas" lease looks for sagas nobody drives
WAIT_SECONDS = 0.2  # how often a caller whose saga another replica drives reads the log


class StepRefused(Exception):
    """A definite failure that did nothing: retrying will not help, compensate the steps before."""


@dataclass
class SagaContext:
    saga_id: str
    payload: dict[str, str]
    results: dict[str, Result] = field(default_factory=dict)

    def key(self, step: str, action: str = "do") -> str:
        """The deterministic idempotency key of one step's action (usable as a request_id)."""
        return f"{self.saga_id}-{step}-{action}"


@dataclass(frozen=True)
class Step:
    name: str
    action: Callable[[SagaContext], Awaitable[Result]]
    compensation: Callable[[SagaContext, Result], Awaitable[None]] | None = None


@dataclass(frozen=True)
class SagaDefinition:
    saga_type: str
    steps: tuple[Step, ...]
    on_finish: Callable[[SagaContext, str, str], Awaitable[None]] | None = None  # (ctx, status, error)


@dataclass(frozen=True)
class RetryPolicy:
    step_attempts: int = 3
    compensation_attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


@og_component()
class SagaRunner(BaseComponent):
    """One per context database; contexts register their saga definitions at initialise."""

    def __init__(self, db: ContextDatabase, settings: Settings) -> None:
        self._db = db
        self._lease = Lease(settings.instance_name, LEASE_SECONDS)
        self._definitions: dict[str, SagaDefinition] = {}
        self._running: dict[str, asyncio.Future[sagalog.SagaRecord]] = {}
        self._resumer: asyncio.Task[None] | None = None
        self.policy = RetryPolicy()

    def register(self, definition: SagaDefinition) -> None:
        self._definitions[definition.saga_type] = definition

    async def start(self) -> None:
        """Resumes what a previous process left unfinished, then keeps looking (see the module doc)."""
        self._resumer = asyncio.create_task(self._resume_forever(), name="saga-resume")

    async def shutdown(self) -> None:
        if self._resumer is not None:
            self._resumer.cancel()
            await asyncio.gather(self._resumer, return_exceptions=True)

    async def _resume_forever(self) -> None:
        while True:
            try:
                if await self._db.lead("sagas"):
                    await self._resume_all()
            except Exception:
                logger.exception("looking for sagas to resume failed")
            await asyncio.sleep(RESUME_SECONDS)

    async def _resume_all(self) -> None:
        for saga_id in await self._db.read(sagalog.unfinished, self._lease.owner, time.time()):
            if saga_id in self._running:
                continue
            try:
                await self.run(saga_id)
            except Exception:
                logger.exception("resuming saga %s failed", saga_id)

    async def begin(self, saga_type: str, saga_id: str, payload: dict[str, str]) -> sagalog.SagaRecord:
        await self._db.write(sagalog.create_run, saga_id, saga_type, payload)
        return await self.run(saga_id)

    async def record(self, saga_id: str) -> sagalog.SagaRecord | None:
        return await self._db.read(sagalog.load, saga_id)

    async def run(self, saga_id: str) -> sagalog.SagaRecord:
        """Drives the saga to a terminal state; concurrent callers share one run."""
        running = self._running.get(saga_id)
        if running is None:
            running = asyncio.get_running_loop().create_task(self._drive(saga_id), context=_outliving_the_call())
            self._running[saga_id] = running
            running.add_done_callback(lambda _: self._running.pop(saga_id, None))
        return await asyncio.shield(running)

    async def _drive(self, saga_id: str) -> sagalog.SagaRecord:
        """Drives the saga while this process holds its lease; else waits for whoever does."""
        while True:
            record = await self._db.read(sagalog.load, saga_id)
            if record is None:
                raise KeyError(saga_id)
            if record.status in TERMINAL:
                return record
            if await self._db.write(sagalog.claim, saga_id, self._lease, time.time()):
                try:
                    return await self._drive_claimed(saga_id)
                except LeaseLost:
                    logger.warning("saga %s was taken over by another process; waiting for it", saga_id)
            await asyncio.sleep(WAIT_SECONDS)

    async def _drive_claimed(self, saga_id: str) -> sagalog.SagaRecord:
        record = await self._db.read(sagalog.load, saga_id)
        assert record is not None
        definition = self._definitions[record.saga_type]
        ctx = SagaContext(saga_id, record.payload, {s.name: s.result for s in record.steps.values() if s.state == DONE})
        if record.status == RUNNING:
            await self._forward(definition, record, ctx)
        if record.status == COMPENSATING:
            await self._backward(definition, record, ctx)
        return record

    async def _finish(
        self, definition: SagaDefinition, record: sagalog.SagaRecord, ctx: SagaContext, status: str, error: str = ""
    ) -> None:
        """The owner's reaction first, then the terminal status: a crash in between repeats the
        (idempotent) reaction instead of losing it."""
        if definition.on_finish is not None:
            await definition.on_finish(ctx, status, error or record.error)
        await self._status(record, status, error)

    async def _save(self, record: sagalog.SagaRecord, index: int) -> None:
        await self._db.write(sagalog.write_step, record.saga_id, index, record.steps[index], self._lease, time.time())

    async def _status(self, record: sagalog.SagaRecord, status: str, error: str = "") -> None:
        record.status, record.error = status, error or record.error
        await self._db.write(sagalog.set_status, record.saga_id, status, record.error, self._lease, time.time())

    async def _forward(self, definition: SagaDefinition, record: sagalog.SagaRecord, ctx: SagaContext) -> None:
        for index, step in enumerate(definition.steps):
            stored = record.steps.setdefault(index, sagalog.StepRecord(step.name))
            if stored.state == DONE:
                continue
            error = await self._attempt_step(record, index, step, ctx)
            if error is not None:
                await self._status(record, COMPENSATING, f"{step.name}: {error}")
                return
        await self._finish(definition, record, ctx, COMPLETED)

    async def _attempt_step(self, record: sagalog.SagaRecord, index: int, step: Step, ctx: SagaContext) -> str | None:
        """Runs one step with retries; None on success, else why it failed."""
        stored = record.steps[index]
        for attempt in range(1, self.policy.step_attempts + 1):
            stored.state, stored.attempts = PENDING, stored.attempts + 1
            await self._save(record, index)  # the intent, before acting
            crash_point(f"saga.{step.name}.before")
            try:
                result = await step.action(ctx)
            except StepRefused as refused:
                stored.state, stored.last_error = REFUSED, str(refused)
                await self._save(record, index)
                return str(refused)
            except Exception as exc:  # noqa: BLE001 - transient until retries run out
                stored.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("saga %s step %s attempt %d failed: %s", record.saga_id, step.name, attempt, stored.last_error)
                await self._save(record, index)
                if attempt < self.policy.step_attempts:
                    await asyncio.sleep(self.policy.delay(attempt))
                continue
            crash_point(f"saga.{step.name}.after")
            stored.state, stored.result = DONE, result
            ctx.results[step.name] = result
            await self._save(record, index)  # the result, after acting
            return None
        stored.state = FAILED
        await self._save(record, index)
        return stored.last_error

    async def _backward(self, definition: SagaDefinition, record: sagalog.SagaRecord, ctx: SagaContext) -> None:
        for index in sorted(record.steps, reverse=True):
            stored, step = record.steps[index], definition.steps[index]
            # PENDING or FAILED may have acted before the crash: compensations tolerate "nothing to undo".
            # A REFUSED step did nothing: a saga refused at its first step ends COMPENSATED at once.
            if stored.state in (UNDONE, REFUSED, "") or step.compensation is None:
                continue
            if not await self._compensate(record, index, step, ctx):
                error = f"compensation of {step.name} keeps failing: {stored.last_error}"
                await self._finish(definition, record, ctx, FAILED_NEEDS_OPERATOR, error)
                return
        await self._finish(definition, record, ctx, COMPENSATED)

    async def _compensate(self, record: sagalog.SagaRecord, index: int, step: Step, ctx: SagaContext) -> bool:
        stored = record.steps[index]
        assert step.compensation is not None
        for attempt in range(1, self.policy.compensation_attempts + 1):
            crash_point(f"saga.{step.name}.compensate")
            try:
                await step.compensation(ctx, stored.result)
            except Exception as exc:  # noqa: BLE001 - retried with backoff, then an operator's job
                stored.last_error = f"{type(exc).__name__}: {exc}"
                await self._save(record, index)
                if attempt < self.policy.compensation_attempts:
                    await asyncio.sleep(self.policy.delay(attempt))
                continue
            stored.state = UNDONE
            await self._save(record, index)
            return True
        return False


def _outliving_the_call() -> contextvars.Context:
    """The context a saga runs in: its caller's (who acts, relayed to every step), without the
    caller's deadline. The saga outlives the call that began it (the caller waits for it while it
    may): steps that ran out of the caller's time would all fail at once and turn it around,
    and a client's short deadline would end a disbursement as FAILED_NEEDS_OPERATOR."""
    context = contextvars.copy_context()
    context.run(deadline_var.set, None)
    return context
