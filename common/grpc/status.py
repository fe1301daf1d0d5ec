"""Mapping of AppError to canonical gRPC status codes with google.rpc rich details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from common.errors import (
    Aborted,
    AlreadyExists,
    AppError,
    DeadlineExceeded,
    FieldViolation,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ReasonedError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from common.grpc.call_context import remaining_time

M = TypeVar("M", bound=Message)
ERROR_DOMAIN = "ogpgy.bank"
DEADLINE_SLACK = 0.01  # seconds: a hop's deadline is the caller's, and its timer may fire a hair before the caller's

_CODES: list[tuple[type[AppError], int]] = [
    (ValidationFailed, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (PreconditionFailed, code_pb2.FAILED_PRECONDITION),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (Aborted, code_pb2.ABORTED),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (PermissionDenied, code_pb2.PERMISSION_DENIED),
    (Unavailable, code_pb2.UNAVAILABLE),
    (DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED),
    (ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
]


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


UNAVAILABLE_RETRY_SECONDS = 1.0  # what RetryInfo suggests when a dependency is down


def field_reason(violation: FieldViolation) -> str:
    """A violation's UPPER_SNAKE reason: the one its check gave (FIELD_REQUIRED for a missing
    value), else FIELD_INVALID."""
    return violation.reason or "FIELD_INVALID"


def _retry(seconds: float) -> any_pb2.Any:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(max(int(seconds * 1000), 1))
    return _pack(error_details_pb2.RetryInfo(retry_delay=delay))


def _info(reason: str, metadata: dict[str, str] | None = None) -> any_pb2.Any:
    return _pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {}))


def _details(error: AppError) -> list[any_pb2.Any]:
    """Every error carries an ErrorInfo (AIP-193); bad input also a BadRequest, an unknown resource
    a ResourceInfo, and what may succeed later a RetryInfo."""
    if isinstance(error, ValidationFailed):
        listed, more = _listed(error.violations)
        fields = ",".join(v.field for v in listed)
        if more:
            listed.append(_more(more))
        return [_info("INVALID_REQUEST", {"fields": fields}), _pack(error_details_pb2.BadRequest(field_violations=listed))]
    if isinstance(error, NotFound):
        info = error_details_pb2.ResourceInfo(
            resource_type=error.resource_type, resource_name=_clip(error.resource_id), description=_clip(error.message)
        )
        return [_info("RESOURCE_NOT_FOUND", {"resource_type": error.resource_type}), _pack(info)]
    if isinstance(error, ReasonedError):
        details = [_info(error.reason, {key: _clip(value) for key, value in error.metadata.items()})]
        if isinstance(error, ResourceExhausted):
            details.append(_retry(error.retry_after))
        elif isinstance(error, Unavailable):
            details.append(_retry(UNAVAILABLE_RETRY_SECONDS))
        return details
    return [_info("UNKNOWN_ERROR")]


# What a status may weigh. A client refuses trailers above its metadata limit (8 KiB by default in
# gRPC) with RESOURCE_EXHAUSTED, which would hide the answer: 2000 bad list entries once made 2000
# violations. The details travel base64 (4/3 of their bytes), the message percent-encoded (up to
# 3 bytes a byte): about 5.5 KiB in all at most, beside the request id.
DETAILS_BUDGET = 3 * 1024  # bytes of the serialized details
MESSAGE_BUDGET = 512  # bytes of the message (UTF-8)
TEXT_BUDGET = 256  # bytes of a violation's field or description, or of a metadata value
_MORE_RESERVE = 512  # the ErrorInfo, the Any wrappers and the final "and N more" violation
MORE_VIOLATIONS = "TOO_MANY_VIOLATIONS"  # the reason of the violation that counts the ones not listed


def _clip(text: str, budget: int = TEXT_BUDGET) -> str:
    """`text` cut to `budget` bytes of UTF-8 (ending with an ellipsis when cut, never mid-character)."""
    encoded = text.encode()
    if len(encoded) <= budget:
        return text
    return encoded[: budget - 3].decode(errors="ignore") + "\u2026"


def _listed(violations: Sequence[FieldViolation]) -> tuple[list[error_details_pb2.BadRequest.FieldViolation], int]:
    """The violations that fit the budget, in order, and how many were left out. Each one costs its
    bytes in the BadRequest and its field's in the ErrorInfo's "fields"."""
    listed: list[error_details_pb2.BadRequest.FieldViolation] = []
    spent = 0
    for violation in violations:
        listed_one = error_details_pb2.BadRequest.FieldViolation(
            field=_clip(violation.field), description=_clip(violation.description), reason=field_reason(violation)
        )
        cost = listed_one.ByteSize() + 4 + len(listed_one.field.encode()) + 1
        if spent + cost > DETAILS_BUDGET - _MORE_RESERVE:
            break
        listed.append(listed_one)
        spent += cost
    return listed, len(violations) - len(listed)


def _more(count: int) -> error_details_pb2.BadRequest.FieldViolation:
    return error_details_pb2.BadRequest.FieldViolation(
        field="request",
        description=f"and {count} more violations, not listed: fix those above and send again to see them",
        reason=MORE_VIOLATIONS,
    )


def _message(error: AppError) -> str:
    """The status message, within its budget: a long one of a bad request lists the violations
    that fit, then how many did not."""
    if len(error.message.encode()) <= MESSAGE_BUDGET or not isinstance(error, ValidationFailed):
        return _clip(error.message, MESSAGE_BUDGET)
    summary, more = "invalid request:", len(error.violations)
    for violation in error.violations:
        part = f" {_clip(violation.field, 64)}: {_clip(violation.description, 128)};"
        if len((summary + part).encode()) > MESSAGE_BUDGET - 48:
            break
        summary, more = summary + part, more - 1
    return f"{summary} and {more} more" if more else summary.rstrip(";")


def code_of(error: AppError) -> int:
    return next(code for kind, code in _CODES if isinstance(error, kind))


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]  # grpc.Status is an untyped abstract class
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _with(status: grpc.Status, metadata: Sequence[tuple[str, str]]) -> grpc.Status:
    return _Status(status.code, status.details, (*status.trailing_metadata, *metadata))


def to_grpc_status(error: AppError, metadata: Sequence[tuple[str, str]] = ()) -> grpc.Status:
    """The status (code, message, details) a client receives for `error`, with `metadata` (the
    request id) beside the details."""
    status = status_pb2.Status(code=code_of(error), message=_message(error), details=_details(error))
    return _with(rpc_status.to_status(status), metadata)


def internal_status(message: str = "internal error; it has been logged", metadata: Sequence[tuple[str, str]] = ()) -> grpc.Status:
    """What a client sees for a bug: no internals leak (the request id finds the log line)."""
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_info("INTERNAL")])
    return _with(rpc_status.to_status(status), metadata)


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a server attached to a failed call (works for grpc.aio errors too)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def unpack_detail(status: status_pb2.Status, kind: type[M]) -> M | None:
    """The first detail of type `kind` (BadRequest, ErrorInfo, ...) in a rich status."""
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            return message
    return None


def reason_of(error: grpc.RpcError) -> str:
    """The ErrorInfo reason a server attached to a failed call; "" when there is none."""
    status = rich_status(error)
    info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
    return info.reason if isinstance(info, error_details_pb2.ErrorInfo) else ""


def no_answer(error: grpc.RpcError, reason: str, message: str, metadata: dict[str, str] | None = None) -> AppError:
    """What to answer when a dependency gave no answer: DEADLINE_EXCEEDED when it is the caller's
    own deadline that ran out on the way (never an internal error, never "try later" for what may
    have happened), UNAVAILABLE when the dependency is down or slower than its own timeout."""
    left = remaining_time()
    late = error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    if left is not None and (left <= 0 or (late and left < DEADLINE_SLACK)):
        return DeadlineExceeded(
            "DEADLINE_EXCEEDED",
            "the deadline ran out before the answer; retry with the same request_id to learn what happened",
            dict(metadata or {}),
        )
    return Unavailable(reason, f"{message}: {error.code().name}", metadata)
