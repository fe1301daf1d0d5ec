"""Dead letters for a history to act on: customers onboarded while the notification context's
handler fails (its fail point), so that the history's ReplayDeadLetter and DropDeadLetter have
WAITING letters to race for; the events' check then wants a replayed letter's event notified once,
and excuses the letters left waiting or dropped."""

from __future__ import annotations

import asyncio
import time

from grpc import aio

from common.faults import arm, disarm
from og.operations.v1 import dead_letters_pb2 as pb
from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc
from tests.bank_helpers import Bank

FAILING = "consumer.notification.handle"
LETTERS = 2


async def dead_letters(channel: aio.Channel, tag: str) -> list[str]:
    """The ids of LETTERS new WAITING dead letters of the notification context (as the admin)."""
    stub = pb_grpc.DeadLetterServiceStub(channel)
    waiting = pb.ListDeadLettersRequest(filter='consumer = "notification" AND state = WAITING', page_size=500)
    before = {x.dead_letter_id for x in (await stub.ListDeadLetters(waiting)).dead_letters}
    arm(FAILING)
    try:
        for i in range(LETTERS):
            await Bank(channel).verified_customer(f"{tag}-dead-{i}")
        deadline = time.monotonic() + 20
        while True:
            letters = [x.dead_letter_id for x in (await stub.ListDeadLetters(waiting)).dead_letters]
            new = [x for x in letters if x not in before]
            if len(new) >= LETTERS:
                return new
            assert time.monotonic() < deadline, "the simulation's dead letters did not arrive"
            await asyncio.sleep(0.05)
    finally:
        disarm(FAILING)
