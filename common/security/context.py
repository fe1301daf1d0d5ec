"""The caller of the current RPC, carried in a contextvar for the whole call."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from common.errors import Unauthenticated

ADMIN = "admin"
RELATIONSHIP_MANAGER = "relationship_manager"
CUSTOMER = "customer"
SERVICE = "service"
ROLES = (ADMIN, RELATIONSHIP_MANAGER, CUSTOMER, SERVICE)

# What each role may do beyond its own data; checked with SecurityContext.can().
PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset({"pii:read", "all:read", "all:write", "users:manage"}),
    RELATIONSHIP_MANAGER: frozenset({"assigned:read"}),
    CUSTOMER: frozenset({"own:read", "own:write"}),
    SERVICE: frozenset({"all:read", "all:write"}),
}


@dataclass(frozen=True)
class SecurityContext:
    user_id: str
    username: str
    roles: tuple[str, ...]
    customer_id: str = ""  # set for the customer role: the customer the user is
    token: str = field(default="", repr=False)  # forwarded to downstream contexts; never logged

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset().union(*(PERMISSIONS.get(role, frozenset()) for role in self.roles))

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def can(self, permission: str) -> bool:
        return permission in self.permissions


caller_var: contextvars.ContextVar[SecurityContext | None] = contextvars.ContextVar("ogpgy_caller", default=None)


def current_caller() -> SecurityContext:
    """The authenticated caller; UNAUTHENTICATED when the call carried no valid token."""
    caller = caller_var.get()
    if caller is None:
        raise Unauthenticated("TOKEN_MISSING", "this call needs 'authorization: Bearer <token>' (see IssueToken)")
    return caller
