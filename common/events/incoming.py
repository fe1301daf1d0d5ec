"""A context's events in: each message type it consumes and the method that takes it.

A context's event handler marks its methods with `@INCOMING.on(Message)` (one event at a time) or
`@INCOMING.on_batch(Message)` (a list of them, for a handler that writes them in one
transaction); the context declares
`consumes=INCOMING.messages` and the handler subscribes through `INCOMING.subscribe`, under the
context's own name: what it says it consumes is what it subscribes to, by construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from common.di import BaseComponent, ContextInfo
from common.events.bus import EventBus, Subscription
from common.events.envelope import Envelope, event_type_of

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


class Incoming:
    """Message type -> the name of the handler's method taking (message, envelope), or, for a
    batch method, a list of such pairs."""

    def __init__(self) -> None:
        self._methods: dict[str, tuple[type[Message], str]] = {}
        self._batches: dict[str, tuple[type[Message], str]] = {}

    def on(self, message: type[Message]) -> Callable[[F], F]:
        return self._marker(self._methods, message)

    def on_batch(self, message: type[Message]) -> Callable[[F], F]:
        return self._marker(self._batches, message)

    @staticmethod
    def _marker(methods: dict[str, tuple[type[Message], str]], message: type[Message]) -> Callable[[F], F]:
        def mark(method: F) -> F:
            methods[event_type_of(message)] = (message, method.__name__)
            return method

        return mark

    @property
    def messages(self) -> tuple[type[Message], ...]:
        """The message types consumed: what the context declares in `consumes=`."""
        return tuple(message for message, _ in (*self._methods.values(), *self._batches.values()))

    async def subscribe(self, bus: EventBus, context: ContextInfo, handler: Any) -> Subscription:
        """Subscribes `handler`'s marked methods under the context's name (its consumer group)."""

        async def dispatch(envelope: Envelope) -> None:
            message, name = self._methods[envelope.event_type]
            await getattr(handler, name)(envelope.decode(message), envelope)

        async def dispatch_batch(envelopes: list[Envelope]) -> None:
            message, name = self._batches[envelopes[0].event_type]  # one stream per event type: one type per batch
            await getattr(handler, name)([(envelope.decode(message), envelope) for envelope in envelopes])

        subscriptions = []
        if self._methods:
            subscriptions.append(await bus.subscribe([m for m, _ in self._methods.values()], context.name, dispatch))
        for message, _ in self._batches.values():
            subscriptions.append(await bus.subscribe_batches([message], context.name, dispatch_batch))
        return _Subscriptions(subscriptions)


class _Subscriptions:
    def __init__(self, subscriptions: list[Subscription]) -> None:
        self._subscriptions = subscriptions

    async def close(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()


class Subscriber(BaseComponent):
    """A context's handler of incoming events: its methods marked on `incoming` are subscribed
    when the context starts, and stop being delivered to when it shuts down."""

    incoming: Incoming

    def __init__(self, bus: EventBus, context: ContextInfo) -> None:
        self._bus = bus
        self._context = context
        self._subscription: Subscription | None = None

    async def initialize(self) -> None:
        self._subscription = await self.incoming.subscribe(self._bus, self._context, self)

    async def shutdown(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
