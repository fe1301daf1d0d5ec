"""Assertions on gRPC errors with rich details, shared by the integration tests."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from common.errors import AppError
from common.grpc.status import rich_status, to_grpc_status, unpack_detail


def status_details(error: AppError) -> list[any_pb2.Any]:
    """The rich details a client receives for `error` (as the server's platform maps it)."""
    metadata = dict(to_grpc_status(error).trailing_metadata)
    return list(status_pb2.Status.FromString(metadata["grpc-status-details-bin"]).details)


async def rpc_error(call: Awaitable[object], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail with `code`; returns the error for further checks."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, f"{err.value.code()}: {err.value.details()}"
    return err.value


async def field_violations(call: Awaitable[object]) -> dict[str, str]:
    """INVALID_ARGUMENT with BadRequest details: {field: description}."""
    err = await rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    status = rich_status(err)
    assert status is not None, "no google.rpc.Status details"
    bad = unpack_detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest), "no BadRequest detail"
    return {v.field: v.description for v in bad.field_violations}


async def error_reason(call: Awaitable[object], code: grpc.StatusCode) -> error_details_pb2.ErrorInfo:
    """A failure with `code` and an ErrorInfo detail (its reason is UPPER_SNAKE)."""
    err = await rpc_error(call, code)
    status = rich_status(err)
    assert status is not None
    info = unpack_detail(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo), "no ErrorInfo detail"
    assert info.reason.isupper()
    return info
