"""Background work that runs once for all replicas of a context, for as long as its owner runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


def stopping() -> bool:
    """Whether this task was asked to stop, even if the cancellation itself was lost on the way
    (asyncio.wait_for on Python 3.11 can swallow one arriving as what it awaits completes)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class LeaderLoop:
    """While this process holds the lease (`lead()`), runs `work`; between passes awaits `rest()`.
    A failed pass is logged and the next one tries again; the loop ends when stopped, also when a
    library on the way swallowed the cancellation."""

    def __init__(
        self,
        name: str,
        lead: Callable[[], Awaitable[bool]],
        work: Callable[[], Awaitable[object]],
        rest: Callable[[], Awaitable[object]],
        log: logging.Logger,
    ) -> None:
        self._name = name
        self._lead = lead
        self._work = work
        self._rest = rest
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if await self._lead():
                    await self._work()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure of a pass: logged, and the next pass retries
                self._log.exception("%s: pass failed", self._name)
            if stopping():
                raise asyncio.CancelledError
            await self._rest()
