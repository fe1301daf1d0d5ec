"""The access rules: admin sees all; a customer only their own data; a relationship manager only
the customers assigned to them. A context relaying a call is judged by the user it acts for; a
context acting alone may read what its imports allow and change nothing of a customer's. Personal
data is masked for callers who may not read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common.errors import NotFound, PermissionDenied
from common.security.context import ADMIN, CUSTOMER, RELATIONSHIP_MANAGER, SecurityContext, current_caller

AssignmentLookup = Callable[[SecurityContext, str], Awaitable[bool]]
MASK = "***"


def denied(action: str) -> PermissionDenied:
    caller = current_caller()
    return PermissionDenied(
        "ACCESS_DENIED", f"{', '.join(caller.roles) or 'this caller'} may not {action}", {"user_id": caller.user_id}
    )


def unknown(resource_type: str, resource_id: str, action: str) -> NotFound | PermissionDenied:
    """The answer for a resource that does not exist: NOT_FOUND to a caller who may read every
    such resource, and to anyone else exactly what a resource of somebody else's answers, so that
    ids cannot be probed."""
    if current_caller().reads_everything:
        return NotFound(resource_type, resource_id)
    return denied(action)


def started_by(caller: SecurityContext, context: str) -> bool:
    """Whether the call is `context` acting on its own (no user's authority), itself or relayed
    by the contexts it called: the chain begins at it, each hop authenticated by the next."""
    if caller.has_subject:
        return False
    return caller.via[0] == context if caller.via else caller.service == context


def require_role(*roles: str, action: str, or_started_by: str = "") -> SecurityContext:
    """The caller, if they hold one of `roles` (or, with `or_started_by`, if the call is that
    context acting on its own: work it runs on its own schedule, which the allow-list of what it
    imports bounds); PERMISSION_DENIED otherwise."""
    caller = current_caller()
    if not any(caller.has_role(role) for role in roles) and not (or_started_by and started_by(caller, or_started_by)):
        raise denied(action)
    return caller


async def may_access_customer(
    caller: SecurityContext, customer_id: str, *, assigned: AssignmentLookup, write: bool = False
) -> bool:
    """Whether `caller` may read (or, with write, change) the data of `customer_id`.

    Relationship managers read their assigned customers and change nothing; bank-internal data
    (no customer) is for admins only. A context acting alone (no user) may read, never write.
    """
    if not caller.has_subject:
        return bool(caller.service) and not write
    if caller.has_role(ADMIN):
        return True
    if not customer_id:
        return False
    if caller.has_role(CUSTOMER) and caller.customer_id == customer_id:
        return True
    if caller.has_role(RELATIONSHIP_MANAGER) and not write:
        return await assigned(caller, customer_id)
    return False


async def require_customer_access(
    customer_id: str, *, assigned: AssignmentLookup, write: bool = False, action: str = "access this customer's data"
) -> SecurityContext:
    caller = current_caller()
    if not await may_access_customer(caller, customer_id, assigned=assigned, write=write):
        raise denied(action)
    return caller


def may_read_pii(caller: SecurityContext, customer_id: str) -> bool:
    """Document number, birth date and address: the customer themself and admins only."""
    return caller.can("pii:read") or (caller.has_role(CUSTOMER) and caller.customer_id == customer_id)
