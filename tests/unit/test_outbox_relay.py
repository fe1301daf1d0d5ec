"""The outbox relay stops when asked, also when a nudge arrives as it is cancelled (asyncio.wait_for
on Python 3.11 swallowed that cancellation, and shutdown then hung until its timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

from common.di import ContextInfo
from common.events.outbox import OutboxRelay


class _Quiet:
    """A database with nothing to relay, and an event bus nobody publishes to."""

    dialect = "sqlite"

    async def lead(self, role: str) -> bool:
        return True

    async def read(self, fn: Any, *args: Any) -> Any:
        return []

    async def write(self, fn: Any, *args: Any) -> Any:
        return 0

    async def publish(self, envelope: Any) -> None:
        return None


async def test_a_nudged_relay_stops_when_shut_down() -> None:
    quiet = _Quiet()
    for _ in range(300):
        relay = OutboxRelay(quiet, quiet, ContextInfo("probe", "tests"))  # type: ignore[arg-type]  # duck-typed doubles
        await relay.start()
        await asyncio.sleep(0)
        relay.nudge()
        await asyncio.wait_for(relay.shutdown(), 2)
