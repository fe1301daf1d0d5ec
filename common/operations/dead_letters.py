"""Dead letters kept and acted on: the bus hands over what a consumer gave up on, and an admin
lists, replays or drops it.

A letter is kept in the database of the consumer (context) that gave up on it, beside its inbox:
it survives a restart on either bus (the publisher's outbox marked the event published already, so
nothing else would deliver it again), and acting on it is one unit of work on that database: the
conditional state change that decides who acts, the request_id's key, the audit record with the
operator's reason, and, for a replay, the event put back in the consumer's own outbox addressed to
that consumer alone. Its relay re-publishes it on whichever bus the process has; on Redis the
consumer's group reads it wherever its replicas run, and every other group lets it pass. So a
replay is as durable as any event, and reaches the consumer whichever process hosts it.

A process keeps and serves the letters of the consumers whose databases it opened (all of them in
embedded mode; in a mesh, the consumers it hosts).
"""

from __future__ import annotations

from datetime import UTC, datetime

from common.db.base import Database, Tx
from common.db.databases import Databases
from common.db.idempotency import once
from common.di import BaseComponent, og_component
from common.errors import NotFound, PreconditionFailed
from common.events.bus import EventBus
from common.events.envelope import Envelope
from common.events.outbox import append_envelopes
from common.filtering import Filter
from common.idempotency import IdempotencyKey
from common.observability.metrics import DEAD_LETTERS_WAITING
from common.operations import store
from common.operations.store import DROPPED, REPLAYED, DeadLetter
from common.pagination import PageRequest
from common.security.context import ADMIN, caller_var
from common.security.policy import require_role

RESOURCE = "dead letter"


@og_component()
class DeadLetters(BaseComponent):
    """The dead letters of the consumers this process hosts."""

    def __init__(self, databases: Databases, bus: EventBus) -> None:
        self._databases = databases
        self._bus = bus

    async def initialize(self) -> None:
        self._bus.keep_dead_letters(self.keep)

    async def start(self) -> None:
        """Once every context opened its database: the gauge as the letters stand."""
        for consumer, db in self._databases.opened().items():
            await self._measure(consumer, db)

    async def keep(self, consumer: str, envelopes: list[Envelope], error: str) -> None:
        """Keeps what `consumer` gave up on in its database (the bus's sink). A consumer with no
        database here (a test's) keeps none: the bus's own list is all there is."""
        db = self._databases.opened().get(consumer)
        if db is None:
            self.logger.error("%s has no database in this process: its dead letters are not kept", consumer)
            return
        at = datetime.now(UTC)
        await db.write(lambda tx: store.keep(tx, consumer, envelopes, error, at))
        await self._measure(consumer, db)

    async def page(self, where: Filter, request: PageRequest) -> tuple[list[DeadLetter], str]:
        """Oldest first, across the consumers' databases (ids sort by time)."""
        require_role(ADMIN, action="list dead letters")
        found: list[DeadLetter] = []
        for db in self._databases.opened().values():
            found += await db.read(lambda tx: store.page(tx, where, request.after_key, request.limit + 1))
        found.sort(key=lambda letter: letter.dead_letter_id)
        letters = found[: request.limit]
        return letters, request.next_token(letters[-1].dead_letter_id if len(found) > request.limit else None)

    async def replay(self, key: IdempotencyKey, dead_letter_id: str, reason: str) -> DeadLetter:
        """WAITING -> REPLAYED, and the event back in the consumer's outbox, addressed to it."""
        require_role(ADMIN, action="replay dead letters")
        return await self._act(key, dead_letter_id, REPLAYED, reason)

    async def drop(self, key: IdempotencyKey, dead_letter_id: str, reason: str) -> DeadLetter:
        """WAITING -> DROPPED: never delivered."""
        require_role(ADMIN, action="drop dead letters")
        return await self._act(key, dead_letter_id, DROPPED, reason)

    async def _act(self, key: IdempotencyKey, dead_letter_id: str, state: str, reason: str) -> DeadLetter:
        consumer, db = await self._holding(dead_letter_id)
        caller = caller_var.get()
        actor = caller.user_id if caller is not None else ""
        at = datetime.now(UTC)  # when it was done, not the bank's business date

        async def unit(tx: Tx) -> DeadLetter:
            async def make() -> DeadLetter:
                if not await store.close(tx, dead_letter_id, state, at, actor, reason):
                    letter = await _existing(tx, dead_letter_id)
                    raise PreconditionFailed(
                        "DEAD_LETTER_NOT_WAITING",
                        f"dead letter '{dead_letter_id}' is {letter.state} already (by {letter.actor or 'nobody'}): "
                        "only a WAITING letter is replayed or dropped",
                        {"dead_letter_id": dead_letter_id, "state": letter.state},
                    )
                letter = await _existing(tx, dead_letter_id)
                if state == REPLAYED:
                    await append_envelopes(tx, [letter.redelivery()])
                return letter

            async def replayed(resource: str) -> DeadLetter:
                return await _existing(tx, resource)

            return await once(tx, key, dead_letter_id, make, replayed, reason=reason)

        try:
            return await db.write(unit)
        finally:
            await self._measure(consumer, db)

    async def _holding(self, dead_letter_id: str) -> tuple[str, Database]:
        """The consumer whose database holds the letter, and that database."""
        for consumer, db in self._databases.opened().items():
            if await db.read(lambda tx: store.holds(tx, dead_letter_id)):
                return consumer, db
        raise NotFound(RESOURCE, dead_letter_id)

    async def _measure(self, consumer: str, db: Database) -> None:
        """The gauge of `consumer`'s waiting letters (its database holds its own letters only)."""
        try:
            counts = await db.read(store.waiting)
        except Exception:
            self.logger.warning("could not count the waiting dead letters of %s", consumer, exc_info=True)
            return
        DEAD_LETTERS_WAITING.labels(consumer).set(counts.get(consumer, 0))


async def _existing(tx: Tx, dead_letter_id: str) -> DeadLetter:
    letter = await store.get(tx, dead_letter_id)
    if letter is None:
        raise NotFound(RESOURCE, dead_letter_id)
    return letter
