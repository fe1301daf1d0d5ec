"""Time as a dependency, so rules that depend on today (age, business dates) can be tested."""

from __future__ import annotations

from datetime import UTC, date, datetime

from common.di import og_component


@og_component()
class Clock:
    """The wall clock in UTC. Tests override it with a FixedClock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return self.now().date()


class FixedClock(Clock):
    """A clock that answers the same instant until a test moves it (to make a month pass)."""

    def __init__(self, instant: datetime) -> None:
        self._instant = instant

    def now(self) -> datetime:
        return self._instant

    def move_to(self, instant: datetime) -> None:
        self._instant = instant
