"""Work repeated on a period in a task of its own, for as long as its owner runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Every:
    """Runs `work` every `seconds` until stopped. A failed round is logged and the next one tries
    again: what the work keeps fresh stays as the last good round left it."""

    def __init__(self, name: str, seconds: float, work: Callable[[], Awaitable[None]], log: logging.Logger) -> None:
        self._name = name
        self._seconds = seconds
        self._work = work
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def round(self) -> None:
        """One round now, its failure logged."""
        try:
            await self._work()
        except Exception as exc:  # noqa: BLE001 - the next round retries
            self._log.warning("%s failed: %s", self._name, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._seconds)
            await self.round()
