"""The platform's client interceptors: every outgoing call carries the request id, the deadline
left and the trace of the call being served, and is observed (a CLIENT span, metrics)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from common.grpc.call_context import REQUEST_ID_HEADER, deadline_var, request_id_var
from common.observability.metrics import CLIENT, RpcMetrics
from common.observability.tracing import ClientSpan, inject


def _outgoing_details(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
    metadata = aio.Metadata(*(details.metadata or ()))
    request_id = request_id_var.get()
    if request_id and REQUEST_ID_HEADER not in metadata:
        metadata.add(REQUEST_ID_HEADER, request_id)
    timeout = details.timeout
    carrier: dict[str, str] = {}
    inject(carrier)  # the trace goes on with the next hop
    for key, value in carrier.items():
        if key not in metadata:
            metadata.add(key, value)
    deadline = deadline_var.get()
    if deadline is not None:
        remaining = max(deadline - time.monotonic(), 0.0)
        timeout = remaining if timeout is None else min(timeout, remaining)
    return aio.ClientCallDetails(details.method, timeout, metadata, details.credentials, details.wait_for_ready)


class _UnaryUnaryDetails(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    def __init__(self, rewrite: Callable[[aio.ClientCallDetails], aio.ClientCallDetails]) -> None:
        self._rewrite = rewrite

    async def intercept_unary_unary(self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._rewrite(client_call_details), request)


class _UnaryStreamDetails(aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    def __init__(self, rewrite: Callable[[aio.ClientCallDetails], aio.ClientCallDetails]) -> None:
        self._rewrite = rewrite

    async def intercept_unary_stream(self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._rewrite(client_call_details), request)


def call_details_interceptors(rewrite: Callable[[aio.ClientCallDetails], aio.ClientCallDetails]) -> list[aio.ClientInterceptor]:
    """Client interceptors applying `rewrite` to unary and server-streaming calls alike.

    grpc.aio files each interceptor under the first call kind it implements (an if/elif chain),
    so one object cannot serve both kinds: each kind gets its own.
    """
    return [_UnaryUnaryDetails(rewrite), _UnaryStreamDetails(rewrite)]


_client_metrics: dict[tuple[str, str], RpcMetrics] = {}
_finishing: set[asyncio.Task[None]] = set()  # status reads of ended calls, kept until they ran


async def _observed_call(continuation: Any, details: aio.ClientCallDetails, request: Any, kind: str) -> Any:
    """An outgoing call inside its CLIENT span (current while the next interceptors write the
    metadata, so the callee continues from it), counted as go-grpc-prometheus counts."""
    method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
    metrics = _client_metrics.get((method, kind))
    if metrics is None:
        metrics = _client_metrics[(method, kind)] = RpcMetrics(method, kind, CLIENT)
    metrics.started.inc()
    metrics.sent.inc()
    span, started = ClientSpan(method), time.perf_counter()

    def ended(code: str) -> None:
        if code == "OK" and kind == "unary":
            metrics.received.inc()
        metrics.observe(code, time.perf_counter() - started)
        span.end(code)

    try:
        with span.current():
            call = await continuation(details, request)
    except asyncio.CancelledError:
        ended("CANCELLED")
        raise
    except grpc.RpcError as failed:
        ended(failed.code().name if isinstance(failed.code(), grpc.StatusCode) else "UNKNOWN")
        raise
    call.add_done_callback(lambda done: _on_end(done, ended))
    return call


def _on_end(call: Any, ended: Callable[[str], None]) -> None:
    """An aio call tells its code by a coroutine (already answerable once the call has ended); an
    in-process call tells it at once."""
    code = call.code()
    if not inspect.isawaitable(code):
        ended(code.name)
        return

    async def read() -> None:
        ended((await code).name)

    task = asyncio.get_running_loop().create_task(read())
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


class _ObservedUnaryUnary(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    async def intercept_unary_unary(self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await _observed_call(continuation, client_call_details, request, "unary")


class _ObservedUnaryStream(aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    async def intercept_unary_stream(self, continuation: Any, client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await _observed_call(continuation, client_call_details, request, "server_stream")


def outgoing_context_interceptors() -> list[aio.ClientInterceptor]:
    """Observe every outgoing call (its CLIENT span and client metrics), and put the caller's
    request id, remaining deadline and trace context on it."""
    return [_ObservedUnaryUnary(), _ObservedUnaryStream(), *call_details_interceptors(_outgoing_details)]
