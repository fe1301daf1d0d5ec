"""Identity decides inside the write, over gRPC, on SQLite and PostgreSQL: two admins taking each
other away at the same moment leave the bank one admin (the second is refused, never INTERNAL);
of concurrent password changes proving the same current password, exactly one is made."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import grpc
from grpc import aio

from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.bank_helpers import create_user
from tests.conftest import issue_token

REFUSED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}  # by the write, or its token already revoked


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except aio.AioRpcError as refused:
        return refused.code()
    return grpc.StatusCode.OK


def _take_away(identity: igrpc.IdentityServiceStub, how: str, user_id: str, request_id: str) -> Awaitable[object]:
    if how == "disable":
        return identity.DisableUser(ipb.DisableUserRequest(request_id=request_id, user_id=user_id), timeout=10)
    request = ipb.UpdateUserRequest(request_id=request_id, user_id=user_id, roles=[ipb.ROLE_RELATIONSHIP_MANAGER])
    return identity.UpdateUser(request, timeout=10)


async def _enabled_admins(target: str, token: str) -> list[str]:
    async with bearer_channel(target, token) as channel:
        users = (await igrpc.IdentityServiceStub(channel).ListUsers(ipb.ListUsersRequest(page_size=100), timeout=10)).users
    return [u.username for u in users if ipb.ROLE_ADMIN in u.roles and not u.disabled]


async def test_two_admins_taking_each_other_away_at_once_leave_the_bank_one_admin(
    bank: RunningBank, channel: aio.Channel, admin_token: str
) -> None:
    survivor = ("admin", admin_token)
    rounds = (("disable", "disable"), ("demote", "demote"), ("demote", "disable"), ("disable", "demote"))
    for n, (first, second) in enumerate(rounds):
        async with bearer_channel(bank.target, survivor[1]) as as_survivor:
            survivors = igrpc.IdentityServiceStub(as_survivor)
            me = (await survivors.ListUsers(ipb.ListUsersRequest(page_size=100), timeout=10)).users
            survivor_id = next(u.user_id for u in me if u.username == survivor[0])
            other_id = await create_user(survivors, f"admin{n}", ipb.ROLE_ADMIN, "a long admin password")
            other = (f"admin{n}", await issue_token(bank.target, f"admin{n}", "a long admin password"))
            async with bearer_channel(bank.target, other[1]) as as_other:
                codes = await asyncio.gather(
                    _code(_take_away(survivors, first, other_id, f"take-{n}")),
                    _code(_take_away(igrpc.IdentityServiceStub(as_other), second, survivor_id, f"take-{n}")),
                )
        assert sorted(c == grpc.StatusCode.OK for c in codes) == [False, True], f"round {n} ({first}/{second}): {codes}"
        assert {c for c in codes if c != grpc.StatusCode.OK} <= REFUSED, codes
        survivor = survivor if codes[0] == grpc.StatusCode.OK else other
        assert await _enabled_admins(bank.target, survivor[1]) == [survivor[0]]


async def test_of_five_concurrent_password_changes_proving_the_current_password_exactly_one_is_made(
    bank: RunningBank, channel: aio.Channel
) -> None:
    user_id = await create_user(igrpc.IdentityServiceStub(channel), "rita", ipb.ROLE_RELATIONSHIP_MANAGER, "ritas long password")
    new = [f"ritas new password {i}" for i in range(5)]
    async with bearer_channel(bank.target, await issue_token(bank.target, "rita", "ritas long password")) as as_rita:
        identity = igrpc.IdentityServiceStub(as_rita)
        codes = await asyncio.gather(
            *(
                _code(
                    identity.ChangePassword(
                        ipb.ChangePasswordRequest(
                            request_id=f"pw-{i}", user_id=user_id, current_password="ritas long password", new_password=p
                        ),
                        timeout=10,
                    )
                )
                for i, p in enumerate(new)
            )
        )
    assert codes.count(grpc.StatusCode.OK) == 1, codes
    # the others: the password changed under them (FAILED_PRECONDITION), their check came after the
    # change (INVALID_ARGUMENT), or their token was already revoked by it (UNAUTHENTICATED)
    assert set(codes) - {grpc.StatusCode.OK} <= {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
    }, codes
    logins = [await _code(issue_token(bank.target, "rita", p)) for p in new]
    assert logins.count(grpc.StatusCode.OK) == 1 and logins.index(grpc.StatusCode.OK) == codes.index(grpc.StatusCode.OK)
