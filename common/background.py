"""Work repeated in a task of its own for as long as its owner runs: the one background loop.

A readiness check, a token refresher, a payment forwarder and an outbox courier all want the same
things: a pass, a rest, again; a failed pass logged and retried by the next; a clean stop, also
when a library on the way swallowed the cancellation. Work done once for all replicas of a context
(a forwarder, a courier) passes `lead`: a pass runs only while this process holds that lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


def stopping() -> bool:
    """Whether this task was asked to stop, even if the cancellation itself was lost on the way
    (asyncio.wait_for on Python 3.11 can swallow one arriving as what it awaits completes)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def every(seconds: float) -> Callable[[], Awaitable[None]]:
    """A rest of `seconds` between passes."""
    return lambda: asyncio.sleep(seconds)


class Background:
    """Runs `work`, then awaits `rest()`, until stopped. A failure is logged with its traceback
    the first time, in one line while it repeats, and its end is logged too: an operator sees when
    a loop broke and when it healed, without a traceback every period."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        rest: Callable[[], Awaitable[object]],
        log: logging.Logger,
        *,
        lead: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._name = name
        self._work = work
        self._rest = rest
        self._log = log
        self._lead = lead
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, *, rest_first: bool = False) -> None:
        """Starts the loop: with `rest_first`, its first pass waits a rest (the owner just made one)."""
        self._task = asyncio.create_task(self._run(rest_first), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def round(self) -> None:
        """One pass now (if this process leads), its failure logged, never raised."""
        try:
            if self._lead is None or await self._lead():
                await self._work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a pass: logged, and the next pass retries
            self._failed(exc)
        else:
            if self._failures:
                self._log.info("%s: recovered after %d failed passes", self._name, self._failures)
            self._failures = 0

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures == 1:
            self._log.warning("%s: pass failed", self._name, exc_info=exc)
        else:
            self._log.warning("%s: pass failed again (%d in a row): %r", self._name, self._failures, exc)

    async def _run(self, rest_first: bool) -> None:
        if rest_first:
            await self._rest()
        while True:
            await self.round()
            if stopping():
                raise asyncio.CancelledError
            await self._rest()
