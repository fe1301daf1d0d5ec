"""Idempotency keys: a retry returns the first answer; the same key with other content is refused."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import AlreadyExists


@dataclass(frozen=True)
class IdempotencyKey:
    """The client's request_id, the operation it was used for and a digest of the request."""

    request_id: str
    operation: str
    fingerprint: str


def key_reused(key: IdempotencyKey) -> AlreadyExists:
    return AlreadyExists(
        "IDEMPOTENCY_KEY_REUSED",
        f"request_id '{key.request_id}' was already used for a different {key.operation} request; "
        "use a new request_id for a new request, or resend the original request unchanged",
        {"request_id": key.request_id, "operation": key.operation},
    )
