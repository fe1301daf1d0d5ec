"""Idempotency keys stored in the same transaction as the change they guard."""

from __future__ import annotations

from collections.abc import Sequence

from common.audit import record_change, record_changes
from common.db.base import Tx
from common.idempotency import IdempotencyKey, key_reused, key_voided

VOID = "void"  # the fingerprint of a key closed by `void`: it never makes anything


async def replayed_resource(tx: Tx, key: IdempotencyKey) -> str | None:
    """The resource made by an earlier request with this key, None for a new key.

    Raises AlreadyExists (IDEMPOTENCY_KEY_REUSED) when the key was used for other content, and
    FAILED_PRECONDITION (REQUEST_VOIDED) when it was closed by `void`.
    """
    row = await tx.fetchone(
        "SELECT operation, fingerprint, resource_id FROM idempotency_keys WHERE scope = ? AND request_id = ?",
        key.scope,
        key.request_id,
    )
    if row is None:
        return None
    if row["operation"] == key.operation and row["fingerprint"] == VOID:
        raise key_voided(key)
    if row["operation"] != key.operation or row["fingerprint"] != key.fingerprint:
        raise key_reused(key)
    return str(row["resource_id"])


async def claim(tx: Tx, key: IdempotencyKey, resource_id: str, *, record: bool = True) -> str | None:
    """Claims `key` for `resource_id` in one statement: None when the claim is new (go on and
    make the resource), else the resource an earlier request made (a replay: answer with it).

    Cheaper than replayed_resource + remember on the hot path; a failure later in the same unit
    of work rolls the claim back with everything else. A new claim is a change being made: it is
    recorded in the audit trail, in the same transaction (`record=False`: the caller records it
    once the change is certain, or gives the claim back with `unclaim`).
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


async def unclaim(tx: Tx, key: IdempotencyKey) -> None:
    """Gives back a claim made in this unit of work for a change that was not made after all
    (a refused part of a batch), so that nothing remains of it."""
    await tx.execute("DELETE FROM idempotency_keys WHERE scope = ? AND request_id = ?", key.scope, key.request_id)


async def resource_or_void(tx: Tx, scope: str, request_id: str, operation: str) -> str | None:
    """What the principal's `operation` with this request_id made; when it made nothing, the
    key is closed for good (a later request with it is refused) and None is returned.

    The operation claims its key in its own transaction (`claim`), so the answer is definite:
    either the operation committed first (its resource is returned) or it never will."""
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
        "SELECT operation, fingerprint, resource_id FROM idempotency_keys WHERE scope = ? AND request_id = ?",
        scope,
        request_id,
    )
    if row is None or row["operation"] != operation or row["fingerprint"] == VOID:
        return None
    return str(row["resource_id"])
