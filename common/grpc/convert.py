"""Conversions between protobuf well-known types and Python values, shared by every api.py."""

from __future__ import annotations

import calendar
import hashlib
from datetime import UTC, date, datetime
from typing import Protocol

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from common.idempotency import IdempotencyKey
from common.security.context import caller_var
from common.validation import Violations


def timestamp(value: datetime) -> Timestamp:
    """An aware datetime as a Timestamp (Timestamp.FromDatetime is several times slower)."""
    seconds = calendar.timegm(value.utctimetuple())
    return Timestamp(seconds=seconds, nanos=value.microsecond * 1000)


def fingerprint(request: IdempotentRequest | Message) -> str:
    """Digest of a request: what 'the same content' means for a retry.

    The request_id is part of the digest, which changes nothing: fingerprints are only ever
    compared between requests that carry the same request_id.
    """
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


class IdempotentRequest(Protocol):
    """A write request: every one carries the caller's request_id."""

    request_id: str

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def idempotency_key(request: IdempotentRequest, operation: str) -> IdempotencyKey:
    """The request's key, in the scope of the principal making this call (no caller: "anonymous")."""
    caller = caller_var.get()
    scope = caller.principal if caller is not None else "anonymous"
    return IdempotencyKey(request.request_id, operation, fingerprint(request), scope)


def milliseconds(ms: int) -> duration_pb2.Duration:
    """A Duration of `ms` milliseconds."""
    return duration_pb2.Duration(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def calendar_date(year: int, month: int, day: int) -> date | None:
    """A date from its parts, None when unset (all zero) or impossible (validation reports it)."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


def optional_time(v: Violations, request: Message, field: str) -> datetime | None:
    """The request's Timestamp `field` as an aware datetime; None when unset; a violation when out
    of the range Timestamp allows (0001..9999, nanos 0..999999999)."""
    if not request.HasField(field):
        return None
    value: Timestamp = getattr(request, field)
    if not 0 <= value.nanos < 1_000_000_000 or not -62135596800 <= value.seconds <= 253402300799:
        v.add(field, "a time between 0001-01-01 and 9999-12-31")
        return None
    return value.ToDatetime(tzinfo=UTC)
