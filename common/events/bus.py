"""The event bus every context imports from infrastructure; the backend follows the settings."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from google.protobuf.message import Message
from opentelemetry.trace import SpanKind

from common.config import Settings
from common.di import BaseComponent, og_component
from common.events.envelope import Envelope, event_type_of
from common.grpc.call_context import request_id_var
from common.observability.logs import log_fields
from common.observability.tracing import span

Handler = Callable[[Envelope], Awaitable[None]]
log = logging.getLogger("ogpgy.events")
event_log = logging.getLogger("ogpgy.events.consumed")

MAX_ATTEMPTS = 5


class Subscription(Protocol):
    async def close(self) -> None:
        """Stops delivering to this subscription (its pending events stay for the next start)."""


class BusBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, envelope: Envelope) -> None: ...

    async def subscribe(self, event_types: list[str], consumer: str, handler: Handler) -> Subscription: ...

    def dead_letters(self, consumer: str) -> list[Envelope]: ...


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

    async def publish(self, envelope: Envelope) -> None:
        await self._backend.publish(envelope)

    async def subscribe(self, kinds: list[type[Message]], consumer: str, handler: Handler) -> Subscription:
        """Delivers events of `kinds` to `handler`; `consumer` names the group (one per context)."""
        return await self._backend.subscribe([event_type_of(k) for k in kinds], consumer, _traced(consumer, handler))

    def dead_letters(self, consumer: str) -> list[Envelope]:
        """Events `consumer` gave up on after MAX_ATTEMPTS (for operators and tests)."""
        return self._backend.dead_letters(consumer)


def _traced(consumer: str, handler: Handler) -> Handler:
    """The handler inside a consumer span continuing the publisher's trace, with the publisher's
    request id, and one log line per delivery."""

    async def handle(envelope: Envelope) -> None:
        with span(f"consume {envelope.event_type}", envelope.headers, SpanKind.CONSUMER):
            request_id_var.set(envelope.headers.get("request_id"))
            outcome = "failed"
            try:
                await handler(envelope)
                outcome = "handled"
            finally:
                log_fields(
                    event_log,
                    "event",
                    consumer=consumer,
                    event_type=envelope.event_type,
                    event_id=envelope.event_id,
                    outcome=outcome,
                    request_id=envelope.headers.get("request_id"),
                )

    return handle
