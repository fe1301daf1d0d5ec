"""Components: the unit of construction, injection and lifecycle."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T", bound=type)


class Scope(enum.Enum):
    """How many instances a context makes of a component."""

    SINGLETON = "singleton"  # one per context: the default
    TRANSIENT = "transient"  # one per injection point, all made at build time


@dataclass(frozen=True)
class ComponentSpec:
    """What @og_component recorded on a class."""

    scope: Scope = Scope.SINGLETON


_SPEC_ATTR = "__og_component__"
DEFAULT_SPEC = ComponentSpec()


def og_component(scope: Scope = Scope.SINGLETON) -> Callable[[T], T]:
    """Marks a class as a component. Only metadata is stored: no global registry is touched,
    so a test can build as many independent contexts as it likes."""

    def mark(cls: T) -> T:
        setattr(cls, _SPEC_ATTR, ComponentSpec(scope=scope))
        return cls

    return mark


def component_spec(cls: type) -> ComponentSpec:
    """The spec of a class, or the default for plain classes used as providers."""
    spec = cls.__dict__.get(_SPEC_ATTR)
    return spec if isinstance(spec, ComponentSpec) else DEFAULT_SPEC


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
