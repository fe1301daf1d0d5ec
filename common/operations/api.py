"""og.operations.v1.DeadLetterService: the dead letters of this process's consumers, for admins."""

from __future__ import annotations

from grpc import aio

from common.di import og_component
from common.filtering import FilterField, Kind, parse_filter
from common.grpc.convert import idempotency_key, timestamp
from common.grpc.gates import gated
from common.operations.dead_letters import DeadLetters
from common.operations.store import DROPPED, REPLAYED, WAITING, DeadLetter
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.validation import Violations
from og.operations.v1 import dead_letters_pb2 as pb
from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc

_STATES = {
    WAITING: pb.DEAD_LETTER_STATE_WAITING,
    REPLAYED: pb.DEAD_LETTER_STATE_REPLAYED,
    DROPPED: pb.DEAD_LETTER_STATE_DROPPED,
}
# What a filter may name: the contract's spelling of each state maps to the column's.
FILTER_FIELDS = (
    FilterField("event_type", "event_type", Kind.TEXT),
    FilterField("topic", "event_type", Kind.TEXT),
    FilterField("consumer", "consumer", Kind.TEXT),
    FilterField("state", "state", Kind.ENUM, {s: s for s in _STATES}),
    FilterField("dead_time", "dead_at", Kind.TIMESTAMP),
)


def dead_letter_pb(letter: DeadLetter) -> pb.DeadLetter:
    message = pb.DeadLetter(
        dead_letter_id=letter.dead_letter_id,
        consumer=letter.consumer,
        event_type=letter.envelope.event_type,
        event_id=letter.envelope.event_id,
        error=letter.error,
        dead_time=timestamp(letter.dead_at),
        state=_STATES[letter.state],
        payload=letter.envelope.payload,
        actor=letter.actor,
        reason=letter.reason,
    )
    message.occurred_time.FromJsonString(_rfc3339(letter.envelope.occurred_at))
    if letter.acted_at is not None:
        message.action_time.CopyFrom(timestamp(letter.acted_at))
    return message


def _rfc3339(iso: str) -> str:
    """The outbox's isoformat time as a Timestamp reads it ("+00:00" as "Z")."""
    return iso.replace("+00:00", "Z")


@og_component()
class DeadLetterApi(pb_grpc.DeadLetterServiceServicer):
    """Admins only: the gate refuses anyone else before the request is looked at."""

    def __init__(self, letters: DeadLetters, pages: PageTokens) -> None:
        self._letters = letters
        self._pages = pages

    @gated(ADMIN, action="list dead letters")
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        v = Violations()
        where = parse_filter(v, request.filter, FILTER_FIELDS)
        page = self._pages.request(v, request.page_size, request.page_token, ("dead letters", where.text))
        v.raise_if_any()
        letters, token = await self._letters.page(where, page)
        return pb.ListDeadLettersResponse(dead_letters=[dead_letter_pb(x) for x in letters], next_page_token=token)

    @gated(ADMIN, action="replay dead letters")
    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        letter = await self._letters.replay(
            idempotency_key(request, "ReplayDeadLetter"), request.dead_letter_id, request.reason.strip()
        )
        return pb.ReplayDeadLetterResponse(dead_letter=dead_letter_pb(letter))

    @gated(ADMIN, action="drop dead letters")
    async def DropDeadLetter(self, request: pb.DropDeadLetterRequest, context: aio.ServicerContext) -> pb.DropDeadLetterResponse:
        letter = await self._letters.drop(
            idempotency_key(request, "DropDeadLetter"), request.dead_letter_id, request.reason.strip()
        )
        return pb.DropDeadLetterResponse(dead_letter=dead_letter_pb(letter))
