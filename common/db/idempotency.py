"""Idempotency keys stored in the same transaction as the change they guard.

A key is decided once, in the unit of work that claims it: it names the resource the request
made, or the refusal it met (`once`), or that it was closed without effect (`resource_or_void`).
Whatever it says is the answer to every later request with it; a key is never given back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from common.audit import record_change, record_changes
from common.db.base import Row, Settled, Tx
from common.errors import FieldRefused, FieldViolation, PermissionDenied, PreconditionFailed, ReasonedError
from common.idempotency import IdempotencyKey, key_reused, key_voided

T = TypeVar("T")

VOID = "void"  # the fingerprint of a key closed by `void`: it never makes anything


async def replayed_resource(tx: Tx, key: IdempotencyKey) -> str | None:
    """The resource made by an earlier request with this key, None for a new key.

    Raises AlreadyExists (IDEMPOTENCY_KEY_REUSED) when the key was used for other content, and
    FAILED_PRECONDITION (REQUEST_VOIDED) when it was closed by `void`.
    """
    row = await tx.fetchone(
        "SELECT operation, fingerprint, resource_id, refusal FROM idempotency_keys WHERE scope = ? AND request_id = ?",
        key.scope,
        key.request_id,
    )
    if row is None:
        return None
    if row["operation"] == key.operation and row["fingerprint"] == VOID:
        raise key_voided(key)
    if row["operation"] != key.operation or row["fingerprint"] != key.fingerprint:
        raise key_reused(key)
    if row["refusal"]:
        raise _refusal(row)
    return str(row["resource_id"])


def _refusal(row: Row) -> Refusal:
    return refusal_of(row["refusal"])


# The refusals a unit of work decides on the state it read, kept as its key's answer.
KEPT: dict[str, type[ReasonedError]] = {"FAILED_PRECONDITION": PreconditionFailed, "PERMISSION_DENIED": PermissionDenied}
_FIELD_REFUSED = "INVALID_ARGUMENT"  # a FieldRefused: its violations are kept, not a reason
Refusal = ReasonedError | FieldRefused
REFUSALS = (PreconditionFailed, PermissionDenied, FieldRefused)  # what `once` keeps on the key


def refusal_text(refused: Refusal) -> str:
    """A refusal as a column keeps it, to be answered again as it was first answered."""
    if isinstance(refused, FieldRefused):
        violations = [[v.field, v.description, v.reason] for v in refused.violations]
        return json.dumps({"kind": _FIELD_REFUSED, "violations": violations})
    kind = next(name for name, cls in KEPT.items() if isinstance(refused, cls))
    return json.dumps({"kind": kind, "reason": refused.reason, "message": refused.message, "metadata": refused.metadata})


def refusal_of(text: str) -> Refusal:
    kept = json.loads(text)
    kind = kept.get("kind", "FAILED_PRECONDITION")
    if kind == _FIELD_REFUSED:
        return FieldRefused([FieldViolation(*violation) for violation in kept["violations"]])
    return KEPT[kind](kept["reason"], kept["message"], kept["metadata"])


async def refuse(tx: Tx, key: IdempotencyKey, refused: Refusal) -> None:
    """Keeps `refused` as the answer of the key claimed in this unit of work, for good."""
    refusal = refusal_text(refused)
    await tx.execute(
        "UPDATE idempotency_keys SET refusal = ? WHERE scope = ? AND request_id = ?", refusal, key.scope, key.request_id
    )


async def once(
    tx: Tx,
    key: IdempotencyKey,
    resource_id: str,
    make: Callable[[], Awaitable[T]],
    replay: Callable[[str], Awaitable[T]],
    reason: str = "",
) -> T:
    """Makes `resource_id` once for `key`: `make()` on a new key, `replay(resource)` on one an
    earlier request made it with. A refusal that `make` raises for the state it met (funds short,
    a row moved on, an actor's authority gone, a field that does not match it) undoes what it wrote and stays the key's answer: the unit commits the key
    with the refusal, so an identical request racing this one, or sent later when the state has
    changed, hears the same refusal instead of making the resource after all. `reason`, the
    caller's own (an operator's), goes on the audit record."""
    replayed = await claim(tx, key, resource_id, record=False)
    if replayed is not None:
        return await replay(replayed)
    await tx.execute("SAVEPOINT once")
    try:
        made = await make()
    except REFUSALS as refused:
        await tx.execute("ROLLBACK TO SAVEPOINT once")
        await tx.execute("RELEASE SAVEPOINT once")
        await refuse(tx, key, refused)
        raise Settled(refused) from refused
    await tx.execute("RELEASE SAVEPOINT once")
    await record_change(tx, key.operation, resource_id, key.request_id, reason)
    return made


async def claim(tx: Tx, key: IdempotencyKey, resource_id: str, *, record: bool = True) -> str | None:
    """Claims `key` for `resource_id` in one statement: None when the claim is new (go on and
    make the resource), else the resource an earlier request made (a replay: answer with it).

    Cheaper than replayed_resource + remember on the hot path; a failure later in the same unit
    of work rolls the claim back with everything else. A new claim is a change being made: it is
    recorded in the audit trail, in the same transaction (`record=False`: the caller records it
    once the change is certain, or keeps a refusal on the key with `refuse`).
    """
    claimed = await tx.execute(
        "INSERT INTO idempotency_keys (scope, request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, request_id) DO NOTHING",
        key.scope,
        key.request_id,
        key.operation,
        key.fingerprint,
        resource_id,
    )
    if claimed != 1:
        return await replayed_resource(tx, key)
    if record:
        await record_change(tx, key.operation, resource_id, key.request_id)
    return None


async def claim_new(tx: Tx, claims: Sequence[tuple[IdempotencyKey, str]]) -> None:
    """Claims keys that nothing has claimed (each for the change its resource is getting once,
    decided in this unit of work), in two statements: the keys and their audit records."""
    if not claims:
        return
    await tx.executemany(
        "INSERT INTO idempotency_keys (scope, request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (scope, request_id) DO NOTHING",
        [(k.scope, k.request_id, k.operation, k.fingerprint, resource) for k, resource in claims],
    )
    for operation in sorted({k.operation for k, _ in claims}):
        await record_changes(tx, operation, [(r, k.request_id) for k, r in claims if k.operation == operation])


async def resource_or_void(tx: Tx, scope: str, request_id: str, operation: str) -> str | None:
    """What the principal's `operation` with this request_id made; when it made nothing, the
    key is closed for good (a later request with it is refused) and None is returned.

    The operation claims its key in its own transaction (`claim`), so the answer is definite:
    either the operation committed first (its resource is returned) or it never will. A key that
    keeps a refusal made nothing: None."""
    closed = await tx.execute(
        "INSERT INTO idempotency_keys (scope, request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?, '')"
        " ON CONFLICT (scope, request_id) DO NOTHING",
        scope,
        request_id,
        operation,
        VOID,
    )
    if closed == 1:
        return None
    row = await tx.fetchone(
        "SELECT operation, fingerprint, resource_id, refusal FROM idempotency_keys WHERE scope = ? AND request_id = ?",
        scope,
        request_id,
    )
    if row is None or row["operation"] != operation or row["fingerprint"] == VOID or row["refusal"]:
        return None
    return str(row["resource_id"])
