"""Retries with exponential backoff and full jitter, for idempotent calls only, never past the
caller's deadline."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.grpc.call_context import remaining_time

T = TypeVar("T")


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[BaseException], bool],
    attempts: int = 3,
    base_delay: float = 0.05,
    max_delay: float = 1.0,
) -> T:
    """Calls `fn` up to `attempts` times while its failures are `retryable`. A retry is skipped
    when its backoff would not leave time before the current call's deadline."""
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            if attempt == attempts or not retryable(exc):
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            remaining = remaining_time()
            if remaining is not None and remaining <= delay:
                raise
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
