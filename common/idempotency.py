"""Idempotency keys: a retry returns the first answer; the same key with other content is refused.

A key belongs to the principal that used it: the same request_id from two callers is two keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import AlreadyExists, PreconditionFailed


@dataclass(frozen=True)
class IdempotencyKey:
    """The client's request_id, the operation it was used for, a digest of the request, and the
    principal whose key it is (common.security.context.SecurityContext.principal)."""

    request_id: str
    operation: str
    fingerprint: str
    scope: str


def key_reused(key: IdempotencyKey) -> AlreadyExists:
    return AlreadyExists(
        "IDEMPOTENCY_KEY_REUSED",
        f"request_id '{key.request_id}' was already used for a different {key.operation} request; "
        "use a new request_id for a new request, or resend the original request unchanged",
        {"request_id": key.request_id, "operation": key.operation},
    )


def key_voided(key: IdempotencyKey) -> PreconditionFailed:
    return PreconditionFailed(
        "REQUEST_VOIDED",
        f"request_id '{key.request_id}' was closed without effect (its outcome was looked up and nothing had been "
        "done); use a new request_id",
        {"request_id": key.request_id, "operation": key.operation},
    )
