"""The audit trail's write side: each state change is recorded, in the transaction that makes it,
as a ChangeRecorded event in the context's outbox. Who keeps and serves the trail consumes it;
the record cannot be lost without the change being lost with it.

ChangeRecorded is a platform contract (og.audit.v1), like the shared types: it says who did
what to which resource, and nothing about banking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from common.db.base import Tx
from common.events.outbox import append_events
from common.grpc.call_context import request_id_var
from common.grpc.convert import timestamp
from common.security.context import caller_var
from og.audit.v1.audit_pb2 import ChangeRecorded

# Published by every context through the platform rather than declared by one: the context map
# draws no edge for it.
PLATFORM_EVENTS = (ChangeRecorded,)


def acting(context: str) -> str:
    """Who is making the current change, for the record kept with it: "usr_1 via payment" (a user
    through the contexts that relayed them), "usr_1", or "svc:<context>" (a context on its own)."""
    caller = caller_var.get()
    return caller.chain if caller is not None else f"svc:{context}"


async def record_change(tx: Tx, operation: str, resource: str, request_id: str | None = None, reason: str = "") -> None:
    """Records `operation` on `resource` with the authority of the current call: its end user
    (none when a context acts on its own), the contexts that relayed it, and the request id (the
    idempotency key's; else the call's or the event's that caused the change); with the `reason`
    the caller gave, for an operation that asks for one (an operator's replay of a dead letter)."""
    await record_changes(tx, operation, [(resource, request_id)], reason)


async def record_changes(tx: Tx, operation: str, changes: Sequence[tuple[str, str | None]], reason: str = "") -> None:
    """record_change for many resources (each with its request id) in one statement."""
    caller = caller_var.get()
    at = timestamp(datetime.now(UTC))
    await append_events(
        tx,
        [
            ChangeRecorded(
                time=at,
                context=tx.context,
                operation=operation,
                resource=resource,
                actor=caller.user_id if caller is not None else "",
                on_behalf_of=list(caller.via) if caller is not None else [],
                request_id=request_id if request_id is not None else request_id_var.get() or "",
                service=caller.service if caller is not None else tx.context,
                reason=reason,
            )
            for resource, request_id in changes
        ],
    )
