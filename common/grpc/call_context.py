"""Per-call values carried across hops: the correlation id and the caller's deadline.

A server interceptor fills them from the incoming call; a client interceptor puts them on every
outgoing call, because grpc-python propagates neither by itself.
"""

from __future__ import annotations

import contextvars
import time

REQUEST_ID_HEADER = "x-request-id"


def usable_request_id(value: object) -> bool:
    """Whether a caller's request id is taken as the call's (else the server makes one): printable
    ASCII, 128 characters at most, so that it can go into logs and headers as it came."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ogpgy_request_id", default=None)
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("ogpgy_deadline", default=None)


def remaining_time() -> float | None:
    """Seconds left of the current incoming call's deadline, or None when it has none."""
    deadline = deadline_var.get()
    return None if deadline is None else deadline - time.monotonic()
