"""IssueToken under password guessing: the guessed username is locked out (RESOURCE_EXHAUSTED
with RetryInfo, before any hashing), while other users log in and other RPCs answer."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc import aio

from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc
from tests.conftest import ADMIN_PASSWORD
from tests.grpc_assert import error_reason, rpc_error


async def test_guessing_locks_the_username_out_and_nobody_else(bank: RunningBank) -> None:
    async with aio.insecure_channel(bank.target) as channel:
        identity = pb_grpc.IdentityServiceStub(channel)
        for _ in range(5):
            await rpc_error(
                identity.IssueToken(pb.IssueTokenRequest(username="admin", password="a wrong guess"), timeout=10),
                grpc.StatusCode.UNAUTHENTICATED,
            )
        locked = identity.IssueToken(pb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD), timeout=10)
        error = await rpc_error(locked, grpc.StatusCode.RESOURCE_EXHAUSTED)
        status = rich_status(error)
        assert status is not None
        retry = unpack_detail(status, error_details_pb2.RetryInfo)
        assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.ToMilliseconds() > 0
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
        assert "wrong password" in (other.details() or "")  # another username is not locked
