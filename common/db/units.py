"""Units of work as a use case holds them: load, let the domain decide, save, in one transaction.

A use case writes its unit as `async def unit(uow) -> result` and hands it to its context's
`Units`: the database runs it atomically (on SQLite, on the database thread, driven
synchronously; on PostgreSQL, in one transaction of the pool), so everything decided inside it
is decided on the state it writes over. `uow` is the context's `Unit`: its repositories bound to
that one transaction, and what every unit may do beside them (claim an idempotency key, raise
events, both committed with the writes or not at all). Nothing of a unit outlives it: no port
call, no sleep, no other unit inside one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from common.audit import record_changes
from common.db.base import Tx, UnitOfWork
from common.db.idempotency import Refusal, claim, once, refuse, replayed_resource, resource_or_void
from common.events.inbox import first_delivery
from common.events.outgoing import Outgoing
from common.idempotency import IdempotencyKey

R = TypeVar("R")
T = TypeVar("T")
U = TypeVar("U", bound="Unit")


class Unit:
    """One transaction of a context. A context's unit subclasses it with its repositories
    (`self.payments = Payments(tx)`) and names the events it may raise (`outgoing`)."""

    outgoing: ClassVar[Outgoing | None] = None

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def claim(self, key: IdempotencyKey, resource_id: str, *, record: bool = True) -> str | None:
        """Claims `key` for `resource_id`: None when new, else the resource an earlier request
        with it made (IDEMPOTENCY_KEY_REUSED for other content). `record=False`: the change is
        recorded in the audit trail by the unit once it is certain."""
        return await claim(self.tx, key, resource_id, record=record)

    async def refuse(self, key: IdempotencyKey, refused: Refusal) -> None:
        """Keeps `refused` as the answer of the key this unit claimed, for good."""
        await refuse(self.tx, key, refused)

    async def made_or_closed(self, scope: str, request_id: str, operation: str) -> str | None:
        """What `scope`'s `operation` with `request_id` made; None when nothing, and then the
        request id is closed for good (for a caller that lost the answer: the reply is final)."""
        return await resource_or_void(self.tx, scope, request_id, operation)

    async def replayed(self, key: IdempotencyKey) -> str | None:
        """The resource an earlier request with `key` made; None for a new key (claims nothing)."""
        return await replayed_resource(self.tx, key)

    async def once(
        self,
        key: IdempotencyKey,
        resource_id: str,
        make: Callable[[], Awaitable[T]],
        replay: Callable[[str], Awaitable[T]],
        *,
        reason: str = "",
    ) -> T:
        """`make` for a new key, `replay` for a known one, and a refusal kept as the key's answer
        (`reason`: the actor's, recorded with the change in the audit trail)."""
        return await once(self.tx, key, resource_id, make, replay, reason=reason)

    async def record(self, operation: str, changes: Sequence[tuple[str, str | None]], reason: str = "") -> None:
        """Records changes the unit made (each a resource and its request id) in the audit trail,
        with the reason a person gave for them, if any."""
        await record_changes(self.tx, operation, changes, reason=reason)

    async def first_delivery(self, consumer: str, event_id: str) -> bool:
        """True the first time `consumer` handles `event_id` in a unit (remembered with its writes)."""
        return await first_delivery(self.tx, consumer, event_id)

    async def publish(self, events: Sequence[object]) -> None:
        """Raises `events`: they leave through the outbox once the unit commits."""
        if events:
            if self.outgoing is None:
                raise TypeError(f"{type(self).__name__} names no outgoing events")
            await self.outgoing.append(self.tx, events)


class Runs(Protocol):
    """What runs units: a context's database."""

    async def read(self, fn: UnitOfWork[Any], *args: Any) -> Any: ...

    async def write(self, fn: UnitOfWork[Any], *args: Any) -> Any: ...


class Units(Generic[U]):
    """A context's units of work, each handed to the use case as its `Unit` subclass."""

    def __init__(self, db: Runs, unit: Callable[[Tx], U]) -> None:
        self._db = db
        self._unit = unit

    async def write(self, work: Callable[[U], Awaitable[R]]) -> R:
        """Runs `work` atomically: all it wrote commits, or (on exception) nothing does."""
        result: R = await self._db.write(self._run, work)
        return result

    async def read(self, work: Callable[[U], Awaitable[R]]) -> R:
        """Runs `work` in one read snapshot (it must not write)."""
        result: R = await self._db.read(self._run, work)
        return result

    async def _run(self, tx: Tx, work: Callable[[U], Awaitable[R]]) -> R:
        return await work(self._unit(tx))
