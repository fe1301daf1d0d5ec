"""Wake-ups on commit: a unit of work notifies a channel, and whoever waits on that channel wakes
once the transaction has committed (never for one rolled back). Background loops wait on them
instead of polling fast; they still look now and then, so a lost wake-up only delays them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Notices:
    """This process's waiters, by channel. Level-triggered: notices that arrive while nobody waits
    are one wake-up for the next wait, so a waiter that works after waking misses nothing."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, channel: str) -> asyncio.Event:
        event = self._events.get(channel)
        if event is None:
            event = self._events[channel] = asyncio.Event()
        return event

    def post(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._event(channel).set()

    async def wait(self, channel: str, within: float) -> bool:
        """Whether `channel` was notified (since the last wait) before `within` seconds passed."""
        event = self._event(channel)
        try:
            # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as
            # the event is set, and a loop waiting here would never stop.
            async with asyncio.timeout(within):
                await event.wait()
        except TimeoutError:
            pass
        woken = event.is_set()  # also set while the timeout was being delivered: not lost
        event.clear()
        return woken
