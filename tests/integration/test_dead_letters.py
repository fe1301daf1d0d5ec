"""Dead letters for operators (og.operations.v1.DeadLetterService) on a real bank over gRPC:
a consumer made to fail (its fail point) gives up on an event, the letter is listed with filters
and pages, replayed once the cause is gone (the consumer's effect happens exactly once), or
dropped; two admins racing one letter, a non-admin refused, the audit naming actor and reason, a
letter surviving a restart, and the same on the Redis Streams bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from common.faults import arm, disarm
from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank, start_embedded
from og.operations.v1 import dead_letters_pb2 as pb
from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.bank_helpers import Bank, admin_channel, create_user, eventually
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.grpc_assert import error_reason, field_violations, rpc_error
from tests.servers import RedisServer

FAILING = "consumer.account.handle"  # the account context's event handler fails while armed
ONBOARDED = "ogpgy.customer.v1.CustomerOnboarded"
WAITING = pb.DEAD_LETTER_STATE_WAITING


@pytest.fixture
def account_consumer_failing() -> Iterator[None]:
    arm(FAILING)
    yield
    disarm(FAILING)


async def _letters(channel: aio.Channel, filter_: str = "", page_size: int = 0) -> list[pb.DeadLetter]:
    request = pb.ListDeadLettersRequest(filter=filter_, page_size=page_size)
    return list((await pb_grpc.DeadLetterServiceStub(channel).ListDeadLetters(request)).dead_letters)


async def _dead_onboardings(channel: aio.Channel, count: int, tag: str) -> tuple[list[str], list[pb.DeadLetter]]:
    """`count` customers onboarded while the account context's handler fails: their letters."""
    customers = [await Bank(channel).verified_customer(f"{tag}-{i}") for i in range(count)]

    async def all_dead() -> bool:
        return len(await _letters(channel, f'consumer = "account" AND topic = "{ONBOARDED}"')) >= count

    await eventually(all_dead, what="the account context's dead letters")
    return customers, await _letters(channel, f'consumer = "account" AND topic = "{ONBOARDED}"')


async def _accounts_of(channel: aio.Channel, customer_id: str) -> list[apb.Account]:
    listed = await Bank(channel).accounts.ListAccounts(apb.ListAccountsRequest(customer_id=customer_id))
    return list(listed.accounts)


async def _replayed_once(channel: aio.Channel, customer: str, letter: pb.DeadLetter, request_id: str) -> None:
    """Replays `letter` (the cause gone) and sees the consumer's effect: one default account."""
    letters = pb_grpc.DeadLetterServiceStub(channel)
    request = pb.ReplayDeadLetterRequest(request_id=request_id, dead_letter_id=letter.dead_letter_id, reason="fixed the handler")
    replayed = (await letters.ReplayDeadLetter(request)).dead_letter
    assert replayed.state == pb.DEAD_LETTER_STATE_REPLAYED and replayed.reason == "fixed the handler"
    await Bank(channel).default_account(customer)
    assert (await letters.ReplayDeadLetter(request)).dead_letter == replayed  # a replay of the request: the same answer
    await asyncio.sleep(0.5)
    assert len(await _accounts_of(channel, customer)) == 1


async def test_a_letter_is_listed_then_replayed_once_and_audited(
    bank: RunningBank, channel: aio.Channel, account_consumer_failing: None
) -> None:
    customers, letters = await _dead_onboardings(channel, 1, "dl-replay")
    (letter,) = letters
    assert (letter.consumer, letter.event_type, letter.state) == ("account", ONBOARDED, WAITING)
    assert "InjectedFault" in letter.error and letter.event_id.startswith("evt_") and letter.payload
    assert await _accounts_of(channel, customers[0]) == []  # the consumer's effect never happened
    assert await _letters(channel, 'consumer = "notification"') == []
    assert await _letters(channel, "state = DROPPED") == []
    assert await _letters(channel, 'dead_time >= "2999-01-01T00:00:00Z"') == []
    assert len(await _letters(channel, 'dead_time < "2999-01-01T00:00:00Z" AND state = WAITING')) == 1

    disarm(FAILING)
    await _replayed_once(channel, customers[0], letter, "replay-1")
    stub = pb_grpc.DeadLetterServiceStub(channel)
    again = pb.ReplayDeadLetterRequest(request_id="replay-2", dead_letter_id=letter.dead_letter_id, reason="again")
    info = await error_reason(stub.ReplayDeadLetter(again), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "DEAD_LETTER_NOT_WAITING" and info.metadata["state"] == "REPLAYED"
    other = pb.ReplayDeadLetterRequest(request_id="replay-1", dead_letter_id=letter.dead_letter_id, reason="other words")
    await rpc_error(stub.ReplayDeadLetter(other), grpc.StatusCode.ALREADY_EXISTS)  # another request under the same id

    identity = igrpc.IdentityServiceStub(channel)
    admin = (await identity.ListUsers(ipb.ListUsersRequest())).users[0].user_id

    async def audited() -> list[ipb.AuditEvent]:
        listed = await identity.ListAuditEvents(ipb.ListAuditEventsRequest(resource=letter.dead_letter_id))
        return list(listed.audit_events)

    await eventually(audited, what="the replay's audit record")
    (record,) = await audited()
    assert (record.operation, record.actor, record.reason, record.context) == (
        "ReplayDeadLetter",
        admin,
        "fixed the handler",
        "account",
    )


async def test_letters_come_in_pages_under_one_filter(
    bank: RunningBank, channel: aio.Channel, account_consumer_failing: None
) -> None:
    _, letters = await _dead_onboardings(channel, 3, "dl-pages")
    stub = pb_grpc.DeadLetterServiceStub(channel)
    query = f'topic = "{ONBOARDED}"'
    first = await stub.ListDeadLetters(pb.ListDeadLettersRequest(filter=query, page_size=2))
    assert len(first.dead_letters) == 2 and first.next_page_token
    second = await stub.ListDeadLetters(pb.ListDeadLettersRequest(filter=query, page_size=2, page_token=first.next_page_token))
    assert [x.dead_letter_id for x in [*first.dead_letters, *second.dead_letters]] == [x.dead_letter_id for x in letters]
    assert not second.next_page_token
    other_filter = pb.ListDeadLettersRequest(filter="state = WAITING", page_size=2, page_token=first.next_page_token)
    assert "page_token" in await field_violations(stub.ListDeadLetters(other_filter))
    for bad in ("state = LOST", "consumer ~ account", "owner = x", "state = WAITING OR state = DROPPED"):
        assert "filter" in await field_violations(stub.ListDeadLetters(pb.ListDeadLettersRequest(filter=bad)))
    no_reason = pb.DropDeadLetterRequest(request_id="d-1", dead_letter_id=letters[0].dead_letter_id, reason="  ")
    assert "reason" in await field_violations(stub.DropDeadLetter(no_reason))
    missing = pb.DropDeadLetterRequest(request_id="d-2", dead_letter_id="dlq_NOPE", reason="gone")
    await rpc_error(stub.DropDeadLetter(missing), grpc.StatusCode.NOT_FOUND)


async def test_two_admins_racing_one_letter_one_acts(
    bank: RunningBank, channel: aio.Channel, account_consumer_failing: None
) -> None:
    customers, letters = await _dead_onboardings(channel, 2, "dl-race")
    identity = igrpc.IdentityServiceStub(channel)
    await create_user(identity, "second.admin", ipb.ROLE_ADMIN, "second-admin-password-1")
    other = await issue_token(bank.target, "second.admin", "second-admin-password-1")
    disarm(FAILING)
    async with bearer_channel(bank.target, other) as second:
        stubs = [pb_grpc.DeadLetterServiceStub(c) for c in (channel, second)]
        for letter, customer in zip(letters, customers, strict=True):
            drop = pb.DropDeadLetterRequest(
                request_id=f"race-{letter.dead_letter_id}", dead_letter_id=letter.dead_letter_id, reason="dup"
            )
            replay = pb.ReplayDeadLetterRequest(
                request_id=f"race-{letter.dead_letter_id}", dead_letter_id=letter.dead_letter_id, reason="ok"
            )
            answers = await asyncio.gather(
                stubs[0].DropDeadLetter(drop),
                stubs[1].ReplayDeadLetter(replay),
                stubs[1].DropDeadLetter(drop),
                return_exceptions=True,
            )
            done = [a for a in answers if not isinstance(a, BaseException)]
            refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
            assert len(done) == 1 and len(refused) == 2, answers
            assert all(r.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS) for r in refused)
            state = done[0].dead_letter.state
            await asyncio.sleep(0.3)
            assert len(await _accounts_of(channel, customer)) == (1 if state == pb.DEAD_LETTER_STATE_REPLAYED else 0)
    assert await _letters(channel, "state = WAITING") == []


async def test_only_admins_see_or_touch_dead_letters(bank: RunningBank, channel: aio.Channel) -> None:
    await create_user(igrpc.IdentityServiceStub(channel), "rita.rm", ipb.ROLE_RELATIONSHIP_MANAGER, "rm-password-123456")
    token = await issue_token(bank.target, "rita.rm", "rm-password-123456")
    async with bearer_channel(bank.target, token) as rm:
        stub = pb_grpc.DeadLetterServiceStub(rm)
        await rpc_error(stub.ListDeadLetters(pb.ListDeadLettersRequest()), grpc.StatusCode.PERMISSION_DENIED)
        drop = pb.DropDeadLetterRequest(request_id="rm-1", dead_letter_id="dlq_X", reason="mine")
        await rpc_error(stub.DropDeadLetter(drop), grpc.StatusCode.PERMISSION_DENIED)


async def test_a_letter_survives_a_restart_of_the_embedded_bank(tmp_path: Path, account_consumer_failing: None) -> None:
    settings = Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)
    bank = await start_embedded(settings)
    try:
        async with admin_channel(bank.target) as channel:
            customers, (letter,) = await _dead_onboardings(channel, 1, "dl-restart")
    finally:
        await bank.stop(grace=1)
    disarm(FAILING)
    bank = await start_embedded(settings)
    try:
        async with admin_channel(bank.target) as channel:
            assert [x.dead_letter_id for x in await _letters(channel, "state = WAITING")] == [letter.dead_letter_id]
            await _replayed_once(channel, customers[0], letter, "replay-after-restart")
    finally:
        await bank.stop(grace=1)


@pytest.fixture
async def redis_bank(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[RunningBank]:
    settings = Settings(
        data_dir=tmp_path, port=0, redis_url=redis_server.url, event_redelivery_ms=200, admin_password=ADMIN_PASSWORD
    )
    bank = await start_embedded(settings)
    yield bank
    await bank.stop(grace=1)


async def test_on_redis_streams_a_letter_is_kept_and_replayed_to_its_group(redis_bank: RunningBank) -> None:
    arm(FAILING)
    try:
        async with admin_channel(redis_bank.target) as channel:
            customer = await Bank(channel).verified_customer("dl-redis")

            async def dead() -> list[pb.DeadLetter]:
                return [
                    x for x in await _letters(channel, 'state = WAITING AND consumer = "account"') if x.event_type == ONBOARDED
                ]

            await eventually(dead, within=30, what="the dead letter on Redis")
            (letter,) = await dead()
            assert "InjectedFault" in letter.error
            disarm(FAILING)
            await _replayed_once(channel, customer, letter, "replay-redis")
    finally:
        disarm(FAILING)
