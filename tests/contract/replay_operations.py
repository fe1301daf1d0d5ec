"""Requests of the platform's operator console for tests/contract/test_replays.py: each replay or
drop acts on a dead letter of its own, made by onboarding a customer while the notification
context's handler fails (its fail point), so that the consumers the other cases rely on keep
working."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common.faults import arm, disarm
from og.operations.v1 import dead_letters_pb2 as pb
from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc
from tests.bank_helpers import fresh_document
from tests.conftest import document, onboarding
from tests.contract.replay_world import Case, Refused, ReplayWorld, Sent, rid

FAILING = "consumer.notification.handle"
_taken: set[str] = set()  # letters a case acted on already


def _letter_id(r: Any) -> str:
    return str(r.dead_letter.dead_letter_id)


async def _new_letter(w: ReplayWorld, tag: str) -> str:
    """A WAITING dead letter nobody used yet."""
    letters = pb_grpc.DeadLetterServiceStub(w.channel)
    metadata = await w.metadata(w.admin)
    arm(FAILING)
    try:
        await w.customers.OnboardCustomer(onboarding(f"{rid(tag)}-dead", document=document(fresh_document())), metadata=metadata)
        deadline = time.monotonic() + 15
        while True:
            listed = await letters.ListDeadLetters(
                pb.ListDeadLettersRequest(filter="state = WAITING", page_size=500), metadata=metadata
            )
            fresh = [x.dead_letter_id for x in listed.dead_letters if x.dead_letter_id not in _taken]
            if fresh:
                _taken.add(fresh[0])
                return fresh[0]
            assert time.monotonic() < deadline, "no dead letter arrived"
            await asyncio.sleep(0.05)
    finally:
        disarm(FAILING)


async def _replay(w: ReplayWorld, tag: str) -> Sent:
    letter = await _new_letter(w, tag)
    return Sent(w.admin, pb.ReplayDeadLetterRequest(request_id=rid(tag), dead_letter_id=letter, reason="handler fixed"))


async def _drop(w: ReplayWorld, tag: str) -> Sent:
    letter = await _new_letter(w, tag)
    return Sent(w.admin, pb.DropDeadLetterRequest(request_id=rid(tag), dead_letter_id=letter, reason="not needed"))


async def _closed_letter(w: ReplayWorld, tag: str) -> str:
    letter = await _new_letter(w, tag)
    drop = pb.DropDeadLetterRequest(request_id=f"{rid(tag)}-first", dead_letter_id=letter, reason="first")
    await pb_grpc.DeadLetterServiceStub(w.channel).DropDeadLetter(drop, metadata=await w.metadata(w.admin))
    return letter


async def _replay_closed(w: ReplayWorld, tag: str) -> Refused:
    request = pb.ReplayDeadLetterRequest(request_id=rid(tag), dead_letter_id=await _closed_letter(w, tag), reason="late")
    return Refused(Sent(w.admin, request), "DEAD_LETTER_NOT_WAITING", final="a replayed or dropped letter never waits again")


async def _drop_closed(w: ReplayWorld, tag: str) -> Refused:
    request = pb.DropDeadLetterRequest(request_id=rid(tag), dead_letter_id=await _closed_letter(w, tag), reason="late")
    return Refused(Sent(w.admin, request), "DEAD_LETTER_NOT_WAITING", final="a replayed or dropped letter never waits again")


OPERATIONS_CASES: dict[str, Case] = {
    "ReplayDeadLetter": Case(_letter_id, _replay, (_replay_closed,)),
    "DropDeadLetter": Case(_letter_id, _drop, (_drop_closed,)),
}
