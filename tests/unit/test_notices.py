"""Wake-ups on commit, in one process: level-triggered, never lost at a timeout's edge, and a loop
waiting on them stops when cancelled as a notice arrives (asyncio.wait_for on Python 3.11
swallowed that cancellation, and the outbox relay's shutdown then hung until its timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

from common.db.notices import Notices
from common.di import ContextInfo
from common.events.outbox import OUTBOX, OutboxRelay


async def test_a_notice_posted_before_the_wait_wakes_it_once() -> None:
    notices = Notices()
    notices.post(["outbox", "outbox", "other"])
    assert await notices.wait("outbox", 5)
    assert not await notices.wait("outbox", 0.01), "two notices before a wait are one wake-up"
    assert await notices.wait("other", 5), "channels are apart"


async def test_a_waiter_wakes_when_a_notice_arrives() -> None:
    notices = Notices()
    waiting = asyncio.create_task(notices.wait("outbox", 30))
    await asyncio.sleep(0)
    notices.post(["outbox"])
    assert await asyncio.wait_for(waiting, 5)


async def test_a_notice_that_arrives_as_the_timeout_fires_is_not_lost() -> None:
    notices = Notices()
    waiting = asyncio.create_task(notices.wait("outbox", 0))
    await asyncio.sleep(0)  # the timeout is due and its cancellation scheduled
    notices.post(["outbox"])
    assert await waiting


class _Quiet:
    """A database with nothing to relay whose notices the test posts, and a bus nobody reads."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.notices = Notices()

    async def lead(self, role: str) -> bool:
        return True

    async def read(self, fn: Any, *args: Any) -> Any:
        return []

    async def write(self, fn: Any, *args: Any) -> Any:
        return 0

    async def notified(self, channel: str, within: float) -> bool:
        return await self.notices.wait(channel, within)


async def test_a_woken_relay_stops_when_shut_down() -> None:
    quiet = _Quiet()
    for _ in range(300):
        relay = OutboxRelay(quiet, quiet, ContextInfo("probe", "tests"))  # type: ignore[arg-type]  # duck-typed doubles
        await relay.start()
        await asyncio.sleep(0)
        quiet.notices.post([OUTBOX])
        await asyncio.wait_for(relay.shutdown(), 2)
