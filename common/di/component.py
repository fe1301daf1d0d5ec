"""Components: the unit of construction, injection and lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)


_SPEC_ATTR = "__og_component__"


def og_component() -> Callable[[T], T]:
    """Marks a class as a component: one instance per context, made at build time. Only a mark
    is stored: no global registry is touched, so a test can build as many independent contexts as
    it likes."""

    def mark(cls: T) -> T:
        setattr(cls, _SPEC_ATTR, True)
        return cls

    return mark


class BaseComponent:
    """Base of components with a lifecycle.

    The builder calls `initialize` in dependency order after constructing everything, then
    `start` in the same order once every component is initialised, and `shutdown` in the reverse
    order. `initialize` acquires resources and registers (e.g. event subscriptions); `start` begins
    background work that may reach other components (e.g. an outbox relay), so that no work starts
    before everyone it may reach is ready. All are async: components own connections, tasks and
    servers that must be opened and closed on the running event loop.
    """

    @property
    def logger(self) -> logging.Logger:
        cls = type(self)
        return logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")

    async def initialize(self) -> None:
        """Acquire resources. Dependencies are already initialised."""

    async def start(self) -> None:
        """Begin background work. Every component of the build is initialised."""

    async def shutdown(self) -> None:
        """Release resources. Dependants are already shut down."""
