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
