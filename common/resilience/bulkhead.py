"""A bulkhead for CPU-heavy work (password hashing): a few threads of its own, and a bounded
queue in front of them. A flood of such work then waits its turn or is turned away at once; it
never takes the event loop or the default executor from every other call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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

    @contextmanager
    def admission(self) -> Iterator[None]:
        """A place for work that costs something else first (a throttle's slot before a password
        check): a full bulkhead refuses at once, before that cost is paid for nothing."""
        if self._admitted >= self._capacity:
            raise ResourceExhausted(
                "BUSY", f"too many {self._name} requests at once; retry in a moment", {"work": self._name}, retry_after=1.0
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, work: Callable[..., R], *args: object) -> R:
        with self.admission():
            return await self.run_admitted(work, *args)

    async def run_admitted(self, work: Callable[..., R], *args: object) -> R:
        """Work whose place was taken with `admission()`."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
