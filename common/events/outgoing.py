"""A context's events out: each domain event type and the message it is published as.

Use cases and domain code speak in domain events (plain dataclasses); the context's adapters
hold one `Outgoing` that maps them to the contract's messages, and the repository appends them
through it. The context declares `publishes=OUTGOING.messages`: what it says it publishes is
derived from the only way it has to publish, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message

from common.db.base import Tx
from common.events.outbox import append_events

M = TypeVar("M", bound=Message)
D = TypeVar("D")


class Outgoing:
    """Routes from domain events to messages; `route` once per domain event type."""

    def __init__(self) -> None:
        self._routes: dict[type, tuple[type[Message], Callable[[Any], Message]]] = {}

    def route(self, event: type[D], message: type[M], build: Callable[[D], M]) -> None:
        if event in self._routes:
            raise ValueError(f"{event.__qualname__} is routed twice")
        self._routes[event] = (message, build)

    @property
    def messages(self) -> tuple[type[Message], ...]:
        """The message types published: what the context declares in `publishes=`."""
        return tuple(message for message, _ in self._routes.values())

    def message(self, event: object) -> Message:
        route = self._routes.get(type(event))
        if route is None:
            raise TypeError(
                f"{type(event).__qualname__} has no route to a message. Fix: route it in the context's Outgoing "
                "(its adapters), which also declares it in publishes."
            )
        return route[1](event)

    async def append(self, tx: Tx, events: Iterable[object]) -> None:
        """Adds the events to the outbox inside the caller's transaction, as their messages."""
        await append_events(tx, [self.message(event) for event in events])
