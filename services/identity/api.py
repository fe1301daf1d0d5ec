"""gRPC servicer of the identity context: a request becomes validated domain values, an answer
becomes its message."""

from __future__ import annotations

from datetime import UTC, datetime

from grpc import aio

from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.pagination import PageTokens
from common.security.context import ROLES
from common.validation import Violations, check_id, check_request_id, check_text
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc
from services.identity.domain import User, validate_new_user
from services.identity.service import IdentityUseCases


def _peer_host(peer: str) -> str:
    """The caller's address without its port ("ipv4:127.0.0.1:5555" -> "127.0.0.1"): what one
    machine keeps when it opens a new connection."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    return address.rsplit(":", 1)[0].strip("[]")


_ROLE_NAMES = {pb.Role.Value(f"ROLE_{role.upper()}"): role for role in ROLES}
_ROLE_VALUES = {role: value for value, role in _ROLE_NAMES.items()}


def user_pb(user: User) -> pb.User:
    return pb.User(
        user_id=user.user_id,
        username=user.username,
        roles=[_ROLE_VALUES[r] for r in user.roles],
        customer_id=user.customer_id,
        create_time=timestamp(user.created_at),
    )


@og_component()
class IdentityApi(pb_grpc.IdentityServiceServicer):
    """ogpgy.identity.v1.IdentityService. Tokens are issued to anyone with the right password."""

    PUBLIC_METHODS = ("IssueToken", "GetSigningKeys")

    def __init__(self, service: IdentityUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    async def CreateUser(self, request: pb.CreateUserRequest, context: aio.ServicerContext) -> pb.CreateUserResponse:
        roles = tuple(_ROLE_NAMES.get(r, "?") for r in request.roles)
        v = Violations()
        check_request_id(v, request.request_id)
        validate_new_user(v, request.username, request.password, roles, request.customer_id)
        v.raise_if_any()
        user = await self._service.create_user(
            request.username, request.password, roles, request.customer_id, idempotency_key(request, "CreateUser")
        )
        return pb.CreateUserResponse(user=user_pb(user))

    async def GetUser(self, request: pb.GetUserRequest, context: aio.ServicerContext) -> pb.GetUserResponse:
        v = Violations()
        check_id(v, request.user_id, "user_id", "usr")
        v.raise_if_any()
        return pb.GetUserResponse(user=user_pb(await self._service.get(request.user_id)))

    async def ListUsers(self, request: pb.ListUsersRequest, context: aio.ServicerContext) -> pb.ListUsersResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("users",))
        v.raise_if_any()
        users, token = await self._service.page(page)
        return pb.ListUsersResponse(users=[user_pb(u) for u in users], next_page_token=token)

    async def IssueToken(self, request: pb.IssueTokenRequest, context: aio.ServicerContext) -> pb.IssueTokenResponse:
        v = Violations()
        check_text(v, request.username, "username", max_len=64)
        check_text(v, request.password, "password", max_len=1024)
        check_text(v, request.audience, "audience", max_len=128, required=False)
        v.raise_if_any()
        token, expires = await self._service.issue_token(
            request.username, request.password, request.audience, _peer_host(context.peer())
        )
        return pb.IssueTokenResponse(access_token=token, expire_time=timestamp(datetime.fromtimestamp(expires, UTC)))

    async def GetSigningKeys(self, request: pb.GetSigningKeysRequest, context: aio.ServicerContext) -> pb.GetSigningKeysResponse:
        return pb.GetSigningKeysResponse(jwks_json=self._service.signing_keys())
