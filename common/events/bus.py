"""The event bus every context imports from infrastructure; the backend follows the settings."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from google.protobuf.message import Message

from common.config import Settings
from common.di import BaseComponent, og_component
from common.events.envelope import Envelope, event_type_of
from common.faults import fail_point
from common.grpc.call_context import request_id_var
from common.observability.logs import log_fields
from common.observability.tracing import consuming

Handler = Callable[[Envelope], Awaitable[None]]
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]  # all or nothing: a failure redelivers the batch
# Where a backend hands the events a consumer gave up on: (consumer, envelopes, last error). It
# keeps them durably before the backend lets go of them (the outbox marked them published, the
# stream entry is acknowledged): a failure here leaves them to be delivered again.
DeadLetterSink = Callable[[str, list[Envelope], str], Awaitable[None]]
# An envelope re-delivered to one consumer (an operator's replay of its dead letter): the header
# names that consumer, and every other consumer of the event type lets it pass unhandled.
REDELIVERED_TO = "og-redelivered-to"


def meant_for(envelope: Envelope, consumer: str) -> bool:
    """Whether `consumer` handles `envelope`: every event, except one re-delivered to another."""
    return envelope.headers.get(REDELIVERED_TO, consumer) == consumer


def error_text(error: BaseException) -> str:
    """A handler's failure as a dead letter keeps it: its type and message, bounded."""
    return f"{type(error).__name__}: {error}"[:2000]


def singly(handler: Handler) -> BatchHandler:
    """A handler of single events, as backends call handlers: with batches of one."""

    async def one(envelopes: list[Envelope]) -> None:
        await handler(envelopes[0])

    return one


log = logging.getLogger("ogpgy.events")
event_log = logging.getLogger("ogpgy.events.consumed")

MAX_ATTEMPTS = 5


class Subscription(Protocol):
    async def close(self) -> None:
        """Stops delivering to this subscription (its pending events stay for the next start)."""


class BusBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish_many(self, envelopes: list[Envelope]) -> None:
        """Publishes the envelopes in order, in as few round trips as the backend allows."""

    async def subscribe(self, event_types: list[str], consumer: str, handler: Handler) -> Subscription: ...

    async def subscribe_batches(self, event_types: list[str], consumer: str, handler: BatchHandler) -> Subscription: ...

    def dead_letters(self, consumer: str) -> list[Envelope]: ...

    sink: DeadLetterSink | None

    async def reachable(self) -> None:
        """Returns when the backend answers; raises when it does not."""


@og_component()
class EventBus(BaseComponent):
    """Publish envelopes; subscribe a consumer (a context) to event types.

    In-memory when `settings.redis_url` is empty (embedded mode), Redis Streams otherwise.
    Handlers must be idempotent (use the inbox): delivery is at-least-once on both backends.
    """

    def __init__(self, settings: Settings) -> None:
        self._backend: BusBackend
        if settings.redis_url:
            from common.events.redis_streams import RedisStreamsBackend

            self._backend = RedisStreamsBackend(settings.redis_url, redelivery_ms=settings.event_redelivery_ms)
        else:
            from common.events.memory import InMemoryBackend

            self._backend = InMemoryBackend()

    async def initialize(self) -> None:
        await self._backend.start()

    async def shutdown(self) -> None:
        await self._backend.stop()

    async def reachable(self) -> None:
        """Returns when the bus answers (Redis: a PING); raises when it does not."""
        await self._backend.reachable()

    async def publish(self, envelope: Envelope) -> None:
        await self._backend.publish_many([envelope])

    async def publish_many(self, envelopes: list[Envelope]) -> None:
        """The envelopes in order, in one round trip where the backend can (the outbox relay's batches)."""
        if envelopes:
            await self._backend.publish_many(envelopes)

    async def subscribe(self, kinds: list[type[Message]], consumer: str, handler: Handler) -> Subscription:
        """Delivers events of `kinds` to `handler`; `consumer` names the group (one per context)."""
        return await self._backend.subscribe([event_type_of(k) for k in kinds], consumer, _traced(consumer, handler))

    async def subscribe_batches(self, kinds: list[type[Message]], consumer: str, handler: BatchHandler) -> Subscription:
        """Delivers events of `kinds` to `handler` a batch at a time (what one read returned), for
        handlers that write a batch in one transaction; the batch is acknowledged together."""
        return await self._backend.subscribe_batches(
            [event_type_of(k) for k in kinds], consumer, _traced_batch(consumer, handler)
        )

    def dead_letters(self, consumer: str) -> list[Envelope]:
        """Events `consumer` gave up on after MAX_ATTEMPTS in this process since it started (for
        tests); operators see the durable ones through og.operations.v1.DeadLetterService."""
        return self._backend.dead_letters(consumer)

    def keep_dead_letters(self, sink: DeadLetterSink) -> None:
        """From now on, the events a consumer gives up on are handed to `sink` to be kept."""
        self._backend.sink = sink


def _traced(consumer: str, handler: Handler) -> Handler:
    """The handler inside a consumer span continuing the publisher's trace, with the publisher's
    request id, and one log line per delivery."""

    async def handle(envelope: Envelope) -> None:
        with consuming(consumer, envelope.event_type, 1, envelope.headers):
            request_id_var.set(envelope.headers.get("request_id"))
            outcome = "failed"
            try:
                fail_point(f"consumer.{consumer}.handle")  # a consumer's handler failing, as one would
                await handler(envelope)
                outcome = "handled"
            finally:
                _log_consumed(consumer, envelope, outcome)

    return handle


def _traced_batch(consumer: str, handler: BatchHandler) -> BatchHandler:
    """A batch in one consumer span (continuing the first event's trace), one log line per event."""

    async def handle(envelopes: list[Envelope]) -> None:
        with consuming(consumer, envelopes[0].event_type, len(envelopes), envelopes[0].headers):
            outcome = "failed"
            try:
                fail_point(f"consumer.{consumer}.handle")
                await handler(envelopes)
                outcome = "handled"
            finally:
                for envelope in envelopes:
                    _log_consumed(consumer, envelope, outcome)

    return handle


def _log_consumed(consumer: str, envelope: Envelope, outcome: str) -> None:
    log_fields(
        event_log,
        "event",
        consumer=consumer,
        event_type=envelope.event_type,
        event_id=envelope.event_id,
        outcome=outcome,
        request_id=envelope.headers.get("request_id"),
    )
