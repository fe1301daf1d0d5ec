"""Idempotency keys stored in the same transaction as the change they guard."""

from __future__ import annotations

from common.db.base import Tx
from common.idempotency import IdempotencyKey, key_reused


async def replayed_resource(tx: Tx, key: IdempotencyKey) -> str | None:
    """The resource made by an earlier request with this key, None for a new key.

    Raises AlreadyExists (IDEMPOTENCY_KEY_REUSED) when the key was used for other content.
    """
    row = await tx.fetchone(
        "SELECT operation, fingerprint, resource_id FROM idempotency_keys WHERE request_id = ?", key.request_id
    )
    if row is None:
        return None
    if row["operation"] != key.operation or row["fingerprint"] != key.fingerprint:
        raise key_reused(key)
    return str(row["resource_id"])


async def remember(tx: Tx, key: IdempotencyKey, resource_id: str) -> None:
    await tx.execute(
        "INSERT INTO idempotency_keys (request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?)",
        key.request_id, key.operation, key.fingerprint, resource_id,
    )  # fmt: skip


async def claim(tx: Tx, key: IdempotencyKey, resource_id: str) -> str | None:
    """Claims `key` for `resource_id` in one statement: None when the claim is new (go on and
    make the resource), else the resource an earlier request made (a replay: answer with it).

    Cheaper than replayed_resource + remember on the hot path; a failure later in the same unit
    of work rolls the claim back with everything else.
    """
    claimed = await tx.execute(
        "INSERT INTO idempotency_keys (request_id, operation, fingerprint, resource_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (request_id) DO NOTHING",
        key.request_id, key.operation, key.fingerprint, resource_id,
    )  # fmt: skip
    return None if claimed == 1 else await replayed_resource(tx, key)
