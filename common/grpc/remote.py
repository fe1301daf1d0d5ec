"""Calls to another context's service, for the adapters that implement a use case's ports.

One place turns a failed call into the AppError its status means, rebuilt from the rich details
the callee attached (a refusal keeps its code, reason and metadata; a missing resource its type
and name), and a call that got no answer into `no_answer`. A use case therefore sees the same
errors whether the other context ran in this process or across the network, and no grpc.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2

from common.errors import (
    Aborted,
    AlreadyExists,
    AppError,
    FieldViolation,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ResourceExhausted,
    Unauthenticated,
    ValidationFailed,
)
from common.grpc.status import no_answer, rich_status, unpack_detail

R = TypeVar("R")
Metadata = Sequence[tuple[str, str]]

_REASONED: dict[
    grpc.StatusCode, type[PreconditionFailed | AlreadyExists | Aborted | PermissionDenied | Unauthenticated | ResourceExhausted]
] = {
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailed,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


async def call(
    method: Callable[..., Awaitable[R]],
    request: Any,
    *,
    within: float,
    unavailable: str,
    silence: str = "no answer",
    metadata: Metadata | None = None,
) -> R:
    """`method(request)`, given `within` seconds; its answer, or the AppError its status means (no answer:
    DEADLINE_EXCEEDED when the caller's own deadline ran out, else UNAVAILABLE with `unavailable`
    as the reason and `silence` as the message)."""
    try:
        if metadata is None:
            return await method(request, timeout=within)
        return await method(request, timeout=within, metadata=tuple(metadata))
    except grpc.aio.AioRpcError as err:
        raise app_error(err, unavailable, silence) from err


def app_error(err: grpc.RpcError, unavailable: str, silence: str = "no answer") -> AppError:
    """The AppError a failed call's status means."""
    code, message = err.code(), err.details() or ""
    status = rich_status(err)
    if code == grpc.StatusCode.NOT_FOUND:
        resource = unpack_detail(status, error_details_pb2.ResourceInfo) if status else None
        if resource is not None:
            return NotFound(resource.resource_type, resource.resource_name)
        return NotFound("resource", "")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        bad = unpack_detail(status, error_details_pb2.BadRequest) if status else None
        violations = [FieldViolation(v.field, v.description) for v in bad.field_violations] if bad else []
        return ValidationFailed(violations or [FieldViolation("", message)])
    kind = _REASONED.get(code)
    if kind is not None:
        info = unpack_detail(status, error_details_pb2.ErrorInfo) if status else None
        reason = info.reason if info is not None else code.name
        return kind(reason, message, dict(info.metadata) if info is not None else {})
    return no_answer(err, unavailable, silence)
