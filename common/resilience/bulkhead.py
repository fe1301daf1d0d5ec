"""A bulkhead for CPU-heavy work (password hashing): a few threads of its own, and a bounded
queue in front of them. A flood of such work then waits its turn or is turned away at once; it
never takes the event loop or the default executor from every other call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from common.errors import ResourceExhausted

R = TypeVar("R")


class Bulkhead:
    """Runs work on `workers` threads; beyond `waiting` queued calls, refuses with RESOURCE_EXHAUSTED."""

    def __init__(self, name: str, *, workers: int, waiting: int) -> None:
        self._name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._capacity = workers + waiting
        self._admitted = 0

    async def run(self, work: Callable[..., R], *args: object) -> R:
        if self._admitted >= self._capacity:
            raise ResourceExhausted(
                "BUSY", f"too many {self._name} requests at once; retry in a moment", {"work": self._name}, retry_after=1.0
            )
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
