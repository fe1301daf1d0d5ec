"""gRPC servicer of the identity context: a request becomes validated domain values, an answer
becomes its message."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from grpc import aio

from common.di import og_component
from common.grpc.call_context import caller_peer
from common.grpc.convert import idempotency_key, optional_time, timestamp
from common.pagination import PageTokens
from common.security.context import ROLES
from common.validation import Violations
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc
from services.identity.domain import AuditEvent, AuditQuery, User, validate_new_user, validate_password, validate_roles
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
        disabled=user.disabled,
        update_time=timestamp(user.updated_at) if user.updated_at else None,
    )


def audit_event_pb(event: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        audit_event_id=event.audit_event_id,
        time=timestamp(event.time),
        context=event.context,
        operation=event.operation,
        resource=event.resource,
        actor=event.actor,
        on_behalf_of=list(event.on_behalf_of),
        request_id=event.request_id,
        service=event.service,
        reason=event.reason,
    )


def _roles(values: Iterable[pb.Role.ValueType]) -> tuple[str, ...]:
    return tuple(_ROLE_NAMES.get(r, "?") for r in values)


@og_component()
class IdentityApi(pb_grpc.IdentityServiceServicer):
    """ogpgy.identity.v1.IdentityService. Tokens are issued to anyone with the right password."""

    PUBLIC_METHODS = ("IssueToken", "GetSigningKeys")
    MESH_METHODS = ("GetTokenRevocations",)  # every process's token check asks it

    def __init__(self, service: IdentityUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    async def CreateUser(self, request: pb.CreateUserRequest, context: aio.ServicerContext) -> pb.CreateUserResponse:
        roles = _roles(request.roles)
        v = Violations()
        validate_new_user(v, request.username, request.password, roles, request.customer_id)
        v.raise_if_any()
        user = await self._service.create_user(
            request.username, request.password, roles, request.customer_id, idempotency_key(request, "CreateUser")
        )
        return pb.CreateUserResponse(user=user_pb(user))

    async def GetUser(self, request: pb.GetUserRequest, context: aio.ServicerContext) -> pb.GetUserResponse:
        return pb.GetUserResponse(user=user_pb(await self._service.get(request.user_id)))

    async def ListUsers(self, request: pb.ListUsersRequest, context: aio.ServicerContext) -> pb.ListUsersResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("users",))
        v.raise_if_any()
        users, token = await self._service.page(page)
        return pb.ListUsersResponse(users=[user_pb(u) for u in users], next_page_token=token)

    async def IssueToken(self, request: pb.IssueTokenRequest, context: aio.ServicerContext) -> pb.IssueTokenResponse:
        token, expires = await self._service.issue_token(
            request.username, request.password, request.audience, _peer_host(caller_peer(context.peer()))
        )
        return pb.IssueTokenResponse(access_token=token, expire_time=timestamp(datetime.fromtimestamp(expires, UTC)))

    async def GetSigningKeys(self, request: pb.GetSigningKeysRequest, context: aio.ServicerContext) -> pb.GetSigningKeysResponse:
        return pb.GetSigningKeysResponse(jwks_json=self._service.signing_keys())

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: aio.ServicerContext) -> pb.UpdateUserResponse:
        roles = _roles(request.roles)
        v = Violations()
        validate_roles(v, roles, request.customer_id)
        v.raise_if_any()
        user = await self._service.update_user(
            request.user_id, roles, request.customer_id, idempotency_key(request, "UpdateUser")
        )
        return pb.UpdateUserResponse(user=user_pb(user))

    async def DisableUser(self, request: pb.DisableUserRequest, context: aio.ServicerContext) -> pb.DisableUserResponse:
        user = await self._service.set_disabled(request.user_id, True, idempotency_key(request, "DisableUser"))
        return pb.DisableUserResponse(user=user_pb(user))

    async def EnableUser(self, request: pb.EnableUserRequest, context: aio.ServicerContext) -> pb.EnableUserResponse:
        user = await self._service.set_disabled(request.user_id, False, idempotency_key(request, "EnableUser"))
        return pb.EnableUserResponse(user=user_pb(user))

    async def RevokeTokens(self, request: pb.RevokeTokensRequest, context: aio.ServicerContext) -> pb.RevokeTokensResponse:
        user = await self._service.revoke_tokens(request.user_id, idempotency_key(request, "RevokeTokens"))
        return pb.RevokeTokensResponse(user=user_pb(user))

    async def ChangePassword(self, request: pb.ChangePasswordRequest, context: aio.ServicerContext) -> pb.ChangePasswordResponse:
        v = Violations()
        validate_password(v, request.new_password, "new_password")
        v.check(request.new_password != request.current_password, "new_password", "must differ from the current password")
        v.raise_if_any()
        user = await self._service.change_password(
            request.user_id,
            request.current_password,
            request.new_password,
            _peer_host(caller_peer(context.peer())),
            idempotency_key(request, "ChangePassword"),
        )
        return pb.ChangePasswordResponse(user=user_pb(user))

    async def GetTokenRevocations(
        self, request: pb.GetTokenRevocationsRequest, context: aio.ServicerContext
    ) -> pb.GetTokenRevocationsResponse:
        revocations = await self._service.list_revocations()
        return pb.GetTokenRevocationsResponse(
            revocations=[
                pb.TokenRevocation(user_id=r.user_id, min_generation=r.min_generation, disabled=r.disabled) for r in revocations
            ]
        )

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        v = Violations()
        query = AuditQuery(
            request.actor, request.resource, optional_time(v, request, "start_time"), optional_time(v, request, "end_time")
        )
        if query.start is not None and query.end is not None:
            v.check(query.start < query.end, "end_time", "after start_time")
        page = self._pages.request(
            v, request.page_size, request.page_token, ("audit", query.actor, query.resource, str(query.start), str(query.end))
        )
        v.raise_if_any()
        events, token = await self._service.audit_page(query, page)
        return pb.ListAuditEventsResponse(audit_events=[audit_event_pb(e) for e in events], next_page_token=token)
