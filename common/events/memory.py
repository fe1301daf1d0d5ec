"""In-memory bus for embedded mode: publish returns once every subscriber handled the event.

Durability comes from the outbox: the relay marks an event published only after this delivery,
so a crash mid-delivery re-delivers after restart (and the consumer's inbox drops the repeat).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.events.bus import MAX_ATTEMPTS, Handler, log
from common.events.envelope import Envelope

RETRY_DELAY = 0.01


@dataclass
class _MemorySubscription:
    backend: InMemoryBackend
    event_types: list[str]
    consumer: str
    handler: Handler
    active: bool = True

    async def close(self) -> None:
        self.active = False
        self.backend.subscriptions.remove(self)


@dataclass
class InMemoryBackend:
    subscriptions: list[_MemorySubscription] = field(default_factory=list)
    dead: dict[str, list[Envelope]] = field(default_factory=dict)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.subscriptions.clear()

    async def publish(self, envelope: Envelope) -> None:
        targets = [s for s in self.subscriptions if envelope.event_type in s.event_types]
        await asyncio.gather(*(self._deliver(s, envelope) for s in targets))

    async def _deliver(self, subscription: _MemorySubscription, envelope: Envelope) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not subscription.active:
                return
            try:
                await subscription.handler(envelope)
                return
            except Exception:  # noqa: BLE001 - retried, then dead-lettered
                log.exception("%s failed on %s (attempt %d)", subscription.consumer, envelope.event_id, attempt)
                await asyncio.sleep(RETRY_DELAY * attempt)
        self.dead.setdefault(subscription.consumer, []).append(envelope)
        log.error("%s dead-lettered %s %s", subscription.consumer, envelope.event_type, envelope.event_id)

    async def subscribe(self, event_types: list[str], consumer: str, handler: Handler) -> _MemorySubscription:
        subscription = _MemorySubscription(self, event_types, consumer, handler)
        self.subscriptions.append(subscription)
        return subscription

    def dead_letters(self, consumer: str) -> list[Envelope]:
        return list(self.dead.get(consumer, []))
