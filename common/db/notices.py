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
        await _until(event, within)
        woken = event.is_set()
        event.clear()
        return woken


class Bulletin:
    """A wake-up for any number of waiters in this process (Notices wakes one per channel). A
    waiter takes the edition before it looks, then waits on it: a post in between is not missed."""

    def __init__(self) -> None:
        self._edition = asyncio.Event()

    def edition(self) -> asyncio.Event:
        return self._edition

    def post(self) -> None:
        self._edition.set()
        self._edition = asyncio.Event()

    @staticmethod
    async def wait(edition: asyncio.Event, within: float) -> bool:
        """Whether `edition` was posted before `within` seconds passed."""
        await _until(edition, within)
        return edition.is_set()


async def _until(event: asyncio.Event, within: float) -> None:
    """Waits for `event` at most `within` seconds. Not asyncio.wait_for nor asyncio.timeout: on
    Python 3.11 both can swallow a cancellation that arrives as the event is set or the time runs
    out, and a loop waiting here would then never stop. asyncio.wait neither times out by
    cancelling nor catches a cancellation."""
    if event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=within)
    finally:
        waiter.cancel()
