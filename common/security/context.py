"""Who a call acts for, carried in a contextvar for the whole call.

A call has a *subject* (the end user whose authority it carries: user id, roles, customer) and,
when a context relays it, the *service* that made this hop and the chain of contexts it came
through (`via`). A context acting on its own (a worker completing what a user started) has a
service and no subject: it holds no user's authority at all.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from common.errors import Unauthenticated

ADMIN = "admin"
RELATIONSHIP_MANAGER = "relationship_manager"
CUSTOMER = "customer"
SERVICE = "service"  # reserved: service identities belong to contexts, never to users
ROLES = (ADMIN, RELATIONSHIP_MANAGER, CUSTOMER, SERVICE)
USER_ROLES = (ADMIN, RELATIONSHIP_MANAGER, CUSTOMER)

# What each role may do beyond its own data; checked with SecurityContext.can(). No role may
# write everything but an admin's, and a service identity has no role at all.
PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset({"pii:read", "all:read", "all:write", "users:manage"}),
    RELATIONSHIP_MANAGER: frozenset({"assigned:read"}),
    CUSTOMER: frozenset({"own:read", "own:write"}),
}


@dataclass(frozen=True)
class SecurityContext:
    user_id: str  # the subject; "" when a context acts on its own
    username: str
    roles: tuple[str, ...]
    customer_id: str = ""  # set for the customer role: the customer the user is
    token: str = field(default="", repr=False)  # the subject's token, relayed to other contexts; never logged
    service: str = ""  # the context that made this hop ("" for a direct call)
    via: tuple[str, ...] = ()  # the contexts the call came through, oldest first (ends with `service`)

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset().union(*(PERMISSIONS.get(role, frozenset()) for role in self.roles))

    @property
    def has_subject(self) -> bool:
        """Whether the call carries an end user's authority (a context alone carries none)."""
        return bool(self.user_id)

    @property
    def principal(self) -> str:
        """Who made this hop: the scope of its idempotency keys and the actor of what it changes.
        A context is one principal for the request ids it derives from its own unique ids."""
        return f"svc:{self.service}" if self.service else f"usr:{self.user_id}"

    @property
    def chain(self) -> str:
        """The authority behind the call, for the record: "usr_1 via payment", "svc:payment"."""
        if not self.has_subject:
            return self.principal
        return f"{self.user_id} via {'>'.join(self.via)}" if self.via else self.user_id

    @property
    def reads_everything(self) -> bool:
        """An admin, or a context acting alone (it may read what it imports; its writes are
        judged resource by resource)."""
        return self.can("all:read") or not self.has_subject

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def service_identity(context: str) -> SecurityContext:
    """A context acting on its own: no subject, no role, only its name."""
    return SecurityContext("", f"service-{context}", (), service=context, via=(context,))


caller_var: contextvars.ContextVar[SecurityContext | None] = contextvars.ContextVar("ogpgy_caller", default=None)


def current_caller() -> SecurityContext:
    """The authenticated caller; UNAUTHENTICATED when the call carried no valid token."""
    caller = caller_var.get()
    if caller is None:
        raise Unauthenticated("TOKEN_MISSING", "this call needs 'authorization: Bearer <token>' (see IssueToken)")
    return caller


@contextmanager
def as_itself() -> Iterator[None]:
    """Within the block, calls this context makes carry its own identity and no subject: for what
    it asks on its own behalf while serving someone (e.g. who manages a customer), never for
    acting on that someone's resources."""
    token = caller_var.set(None)
    try:
        yield
    finally:
        caller_var.reset(token)


@contextmanager
def on_its_own(context: str) -> Iterator[None]:
    """Within the block, `context` is the caller of its own use cases: work it starts on its own
    schedule (no one asked), judged as the context alone (no subject, no role) here and, across
    the wire, by the contexts it calls; recorded as "svc:<context>"."""
    token = caller_var.set(SecurityContext("", f"service-{context}", (), service=context))
    try:
        yield
    finally:
        caller_var.reset(token)
