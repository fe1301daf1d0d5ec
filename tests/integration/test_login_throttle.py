"""IssueToken under password guessing, on SQLite and PostgreSQL (one process: the counts in its
memory): a burst of guesses in flight gets as many password checks as the rules have slots, and
the rest are slowed (RESOURCE_EXHAUSTED with RetryInfo) before any hashing; the guessing address
is slowed, while the username's owner from another address logs in and other RPCs answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio

from common.config import Settings
from common.grpc.client import open_channel
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank, start_embedded
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc
from tests.conftest import ADMIN_PASSWORD
from tests.grpc_assert import error_reason, rpc_error

TRIES_IN_10_SECONDS = 5  # the default login_limits_username_at_address: "5/10 seconds;..."


async def login_outcome(target: str, username: str, password: str, tls: grpc.ChannelCredentials | None = None) -> str:
    """How a login ends: "OK" or its refusal's reason (INVALID_CREDENTIALS: a password was
    checked; LOGIN_THROTTLED: refused before any hashing)."""
    async with open_channel(target, tls) as channel:
        try:
            await pb_grpc.IdentityServiceStub(channel).IssueToken(
                pb.IssueTokenRequest(username=username, password=password), timeout=20
            )
        except aio.AioRpcError as refused:
            status = rich_status(refused)
            info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
            return info.reason if isinstance(info, error_details_pb2.ErrorInfo) else refused.code().name
    return "OK"


async def test_guessing_slows_the_username_from_that_address_and_nobody_else(bank: RunningBank) -> None:
    async with aio.insecure_channel(bank.target) as channel:
        identity = pb_grpc.IdentityServiceStub(channel)
        for _ in range(TRIES_IN_10_SECONDS):
            await rpc_error(
                identity.IssueToken(pb.IssueTokenRequest(username="admin", password="a wrong guess"), timeout=10),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        slowed = identity.IssueToken(pb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD), timeout=10)
        error = await rpc_error(slowed, grpc.StatusCode.RESOURCE_EXHAUSTED)
        status = rich_status(error)
        assert status is not None
        retry = unpack_detail(status, error_details_pb2.RetryInfo)
        assert isinstance(retry, error_details_pb2.RetryInfo) and 0 < retry.retry_delay.ToMilliseconds() <= 10_000
        info = await error_reason(
            identity.IssueToken(pb.IssueTokenRequest(username="ADMIN", password=ADMIN_PASSWORD), timeout=10),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert info.reason == "LOGIN_THROTTLED"
        assert (await identity.GetSigningKeys(pb.GetSigningKeysRequest(), timeout=5)).jwks_json  # other RPCs answer
        other = await rpc_error(
            identity.IssueToken(pb.IssueTokenRequest(username="nobody-else", password="a wrong guess"), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert "wrong password" in (other.details() or "")  # another username is not slowed


async def test_forty_guesses_at_once_get_as_many_password_checks_as_there_are_slots(bank: RunningBank) -> None:
    """Counted before hashing, in flight included: 5 checked (INVALID_CREDENTIALS), 35 refused
    before any hash (on c9dfede, failures were counted after hashing: about 20 were checked)."""
    outcomes = await asyncio.gather(*(login_outcome(bank.target, "admin", f"guess {i}") for i in range(40)))
    assert outcomes.count("INVALID_CREDENTIALS") == TRIES_IN_10_SECONDS, outcomes
    assert outcomes.count("LOGIN_THROTTLED") == 40 - TRIES_IN_10_SECONDS, outcomes


@pytest.fixture
async def dual_stack_bank(settings: Settings) -> AsyncIterator[RunningBank]:
    """The bank listening on IPv4 and IPv6: a caller at 127.0.0.1 and one at ::1 are two addresses."""
    running = await start_embedded(settings.model_copy(update={"host": "[::]"}))
    yield running
    await running.stop(grace=1)


async def test_the_owner_from_another_address_logs_in_while_the_guessing_address_is_slowed(
    dual_stack_bank: RunningBank,
) -> None:
    """A stranger guessing at the first admin from one address slows that address at that
    username, not the owner elsewhere (OWASP: throttle, do not let anyone lock an account)."""
    port = dual_stack_bank.target.rsplit(":", 1)[1]
    stranger, owner = f"127.0.0.1:{port}", f"[::1]:{port}"
    guesses = [await login_outcome(stranger, "admin", f"guess {i}") for i in range(12)]
    assert guesses == ["INVALID_CREDENTIALS"] * TRIES_IN_10_SECONDS + ["LOGIN_THROTTLED"] * (12 - TRIES_IN_10_SECONDS)
    assert await login_outcome(stranger, "admin", ADMIN_PASSWORD) == "LOGIN_THROTTLED"  # the right one too, from there
    assert await login_outcome(owner, "admin", ADMIN_PASSWORD) == "OK"
    assert await login_outcome(owner, "admin", "the owner's typo") == "INVALID_CREDENTIALS"
    assert await login_outcome(owner, "admin", ADMIN_PASSWORD) == "OK"
    assert await login_outcome(stranger, "nobody-else", "a wrong guess") == "INVALID_CREDENTIALS"  # other usernames
