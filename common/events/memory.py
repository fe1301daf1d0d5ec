"""In-memory bus for embedded mode: publish returns once every subscriber handled the event.

Durability comes from the outbox: the relay marks an event published only after this delivery,
so a crash mid-delivery re-delivers after restart (and the consumer's inbox drops the repeat).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.events.bus import MAX_ATTEMPTS, BatchHandler, DeadLetterSink, Handler, error_text, log, meant_for, singly
from common.events.envelope import Envelope
from common.observability.metrics import DEAD_LETTERED

RETRY_DELAY = 0.01


@dataclass
class _MemorySubscription:
    backend: InMemoryBackend
    event_types: list[str]
    consumer: str
    handler: BatchHandler
    one_at_a_time: bool  # a handler of single events: each is retried (and dead-lettered) alone
    active: bool = True

    async def close(self) -> None:
        self.active = False
        self.backend.subscriptions.remove(self)


@dataclass
class InMemoryBackend:
    subscriptions: list[_MemorySubscription] = field(default_factory=list)
    dead: dict[str, list[Envelope]] = field(default_factory=dict)
    sink: DeadLetterSink | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.subscriptions.clear()

    async def reachable(self) -> None:
        return None  # in this process: as reachable as the process

    async def publish_many(self, envelopes: list[Envelope]) -> None:
        """Each subscriber gets its share of the envelopes in order; subscribers run side by side."""
        shares = [
            (s, [e for e in envelopes if e.event_type in s.event_types and meant_for(e, s.consumer)]) for s in self.subscriptions
        ]
        await asyncio.gather(*(self._deliver(s, share) for s, share in shares if share))

    async def _deliver(self, subscription: _MemorySubscription, envelopes: list[Envelope]) -> None:
        batches = [[e] for e in envelopes] if subscription.one_at_a_time else [envelopes]
        for batch in batches:
            await self._deliver_batch(subscription, batch)

    async def _deliver_batch(self, subscription: _MemorySubscription, envelopes: list[Envelope]) -> None:
        error = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not subscription.active:
                return
            try:
                await subscription.handler(envelopes)
                return
            except Exception as failed:  # noqa: BLE001 - retried, then dead-lettered
                error = error_text(failed)
                log.exception("%s failed on %s (attempt %d)", subscription.consumer, envelopes[0].event_id, attempt)
                await asyncio.sleep(RETRY_DELAY * attempt)
        if self.sink is not None:  # kept before the relay marks them published; if it fails, they come again
            await self.sink(subscription.consumer, envelopes, error)
        self.dead.setdefault(subscription.consumer, []).extend(envelopes)
        DEAD_LETTERED.labels(subscription.consumer).inc(len(envelopes))
        log.error("%s dead-lettered %d x %s", subscription.consumer, len(envelopes), envelopes[0].event_type)

    async def subscribe(self, event_types: list[str], consumer: str, handler: Handler) -> _MemorySubscription:
        return self._add(_MemorySubscription(self, event_types, consumer, singly(handler), one_at_a_time=True))

    async def subscribe_batches(self, event_types: list[str], consumer: str, handler: BatchHandler) -> _MemorySubscription:
        return self._add(_MemorySubscription(self, event_types, consumer, handler, one_at_a_time=False))

    def _add(self, subscription: _MemorySubscription) -> _MemorySubscription:
        self.subscriptions.append(subscription)
        return subscription

    def dead_letters(self, consumer: str) -> list[Envelope]:
        return list(self.dead.get(consumer, []))
