"""Server and client interceptors of the platform.

Server side: sets the call context (request id, deadline), refuses a request that breaks its
contract's field rules before the handler runs, and maps AppError to statuses with rich details;
anything else is a bug, logged with its traceback and answered INTERNAL without internals.
It is applied to each handler once, when the handler is registered (InterceptingRegistrar).
Every call has a server span (continuing the caller's trace), Prometheus metrics, and one JSON log
line with its request id and trace id; every outgoing call a client span and client metrics.
Client side: propagates the request id, the remaining deadline and the trace context to the next
hop (identity is the imported stub's part: common.grpc.identity).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import grpc
from grpc import aio

from common.errors import AppError, FieldViolation, ValidationFailed
from common.grpc.call_context import (
    CLIENT_ADDRESS_HEADER,
    REQUEST_ID_HEADER,
    caller_peer,
    client_address_var,
    deadline_var,
    forwarded_peer,
    request_id_var,
    usable_request_id,
)
from common.grpc.contract_rules import contract_violations
from common.grpc.gates import RoleGate, gate_of
from common.grpc.identity import check_gateway, check_importer, header, is_gateway
from common.grpc.inprocess import LocalHandlers
from common.grpc.status import internal_status, no_answer, to_grpc_status
from common.ids import random_bytes
from common.observability.logs import RPC_LOGGER, log_fields
from common.observability.metrics import RpcMetrics
from common.observability.tracing import ServerSpan
from common.security.context import SecurityContext, caller_var
from common.security.pki import identity_of

log = logging.getLogger("ogpgy.grpc")
rpc_log = logging.getLogger(RPC_LOGGER)


def _request_id_of(context: aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and usable_request_id(value):
            return str(value)
    return random_bytes(16).hex()


class Authenticator(Protocol):
    reads_peer: bool  # whether it needs the peer's certificate (reading it costs on every call)

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]], peer: str | None = None) -> SecurityContext:
        """The caller, or Unauthenticated. `peer`: the calling context as its verified
        certificate (or its in-process channel) names it; None for anyone else."""


class _Malformed:
    """Stands for request bytes that are not a message of the method's type."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc answers UNKNOWN when a deserializer raises; a malformed request is the caller's error,
    so the handler receives a marker and answers INVALID_ARGUMENT."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError and whatever a parser raises on garbage
            return _Malformed(exc)

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        _refuse_invalid(request)
        yield request


def _checking_requests(behavior: Callable[..., Any]) -> Callable[..., Any]:
    """A client-streaming handler whose requests are refused one by one when malformed (each
    request of a stream is parsed on its own)."""
    if inspect.isasyncgenfunction(behavior):

        async def streamed(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behavior(_checked(requests), context):
                yield response

        return streamed

    async def answered(requests: AsyncIterator[Any], context: aio.ServicerContext) -> Any:
        return await behavior(_checked(requests), context)

    return answered


def _refuse_invalid(request: Any) -> None:
    """Refuses a request that is not a message of the method's type, or breaks the field rules its
    contract declares: once, here, for every handler, before it runs."""
    if isinstance(request, _Malformed):
        raise ValidationFailed([FieldViolation("request", "the request bytes are not a valid message of this method's type")])
    violations = contract_violations(request)
    if violations:
        raise ValidationFailed(violations)


@dataclass(frozen=True)
class Guard:
    """What a method asks of its callers: a valid token (unless public), from a context that it
    imported the method, and one of the roles of its gate (common.grpc.gates), if it has one."""

    authenticator: Authenticator | None = None
    importers: frozenset[str] | None = frozenset()  # None: every context may call it
    gate: RoleGate | None = None
    reads_peer: bool = False  # the server's callers present certificates (public methods included): who is it


def _peer_identity(context: aio.ServicerContext) -> str | None:
    """The SPIFFE id a verified peer certificate holds (spiffe://ogpgy.bank/context/<name>, ...)."""
    ids: list[bytes] = context.auth_context().get("peer_spiffe_id") or []
    return ids[0].decode() if len(ids) == 1 else None


def _enter_call(context: aio.ServicerContext, method: str, guard: Guard) -> None:
    request_id = _request_id_of(context)
    request_id_var.set(request_id)
    context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))  # echoed, for the caller's logs
    remaining = context.time_remaining()
    deadline_var.set(None if remaining is None else time.monotonic() + remaining)
    caller, authenticator = None, guard.authenticator
    peer = _peer_identity(context) if guard.reads_peer else None
    check_gateway(peer, method, guard.importers)  # before the token costs a verification
    # the caller a front door passes on is at the address the door saw (a login's throttle keys on it)
    forwarded = header(context.invocation_metadata() or (), CLIENT_ADDRESS_HEADER) if is_gateway(peer) else None
    client_address_var.set(forwarded_peer(forwarded))
    if authenticator is not None:
        caller = authenticator.authenticate(context.invocation_metadata() or (), identity_of(peer) if peer else None)
    check_importer(caller, method, guard.importers)
    caller_var.set(caller)
    if guard.gate is not None:  # before the request is looked at: refused whatever its body
        guard.gate.check()


class _Outcome:
    code = "UNKNOWN"


@contextmanager
def _observed(method: str, metrics: RpcMetrics, context: aio.ServicerContext) -> Iterator[_Outcome]:
    """The call's server span (continuing the caller's trace), its metrics and its log line."""
    outcome = _Outcome()
    started = time.perf_counter()
    metrics.started.inc()
    current = ServerSpan(method, context.invocation_metadata() or ())
    try:
        yield outcome
    except asyncio.CancelledError:
        outcome.code = "CANCELLED"
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.observe(outcome.code, elapsed)
        if rpc_log.isEnabledFor(logging.INFO):
            log_fields(
                rpc_log,
                "rpc",
                method=method,
                code=outcome.code,
                duration_ms=round(elapsed * 1000, 3),
                request_id=request_id_var.get(),
                peer=caller_peer(context.peer()),
            )
        current.end(outcome.code)


def _code_of(context: aio.ServicerContext) -> str:
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _answer_for(exc: Exception, method: str) -> AppError | None:
    """The AppError a failure stands for; None for a bug. A call to another context that a use
    case let through unmapped still answers what happened: the caller's deadline ran out on the
    way (DEADLINE_EXCEEDED, as the contract promises), or the dependency is down (UNAVAILABLE)."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
    ):
        level = (
            logging.WARNING if exc.code() == grpc.StatusCode.UNAVAILABLE else logging.DEBUG
        )  # a deadline is the caller's choice
        log.log(level, "%s: a dependency answered %s (request id %s)", method, exc.code().name, request_id_var.get())
        return no_answer(exc, "DEPENDENCY_UNAVAILABLE", "a context this call needs did not answer")
    return None


async def _abort_for(exc: Exception, context: aio.ServicerContext, method: str, outcome: _Outcome) -> None:
    error = _answer_for(exc, method)
    request_id = request_id_var.get()
    echoed = ((REQUEST_ID_HEADER, request_id),) if request_id else ()
    if error is not None:
        status = to_grpc_status(error, echoed)
    else:
        log.exception("unhandled error in %s (request id %s)", method, request_id_var.get())
        status = internal_status(metadata=echoed)
    outcome.code = status.code.name
    await context.abort_with_status(status)


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str, guard: Guard, kind: str = "unary"
) -> Callable[..., Awaitable[Any]]:
    metrics = RpcMetrics(method, kind)

    async def handle(request: Any, context: aio.ServicerContext) -> Any:
        if kind == "unary":
            metrics.received.inc()
        with _observed(method, metrics, context) as outcome:
            try:
                _enter_call(context, method, guard)
                _refuse_invalid(request)
                response = await behavior(request, context)
                outcome.code = "OK"
                metrics.sent.inc()
                return response
            except aio.AbortError:
                outcome.code = _code_of(context)
                raise
            except Exception as exc:  # noqa: BLE001 - mapped to a status, bugs logged
                await _abort_for(exc, context, method, outcome)

    return handle


def _wrap_stream(behavior: Callable[..., Any], method: str, guard: Guard, kind: str = "server_stream") -> Callable[..., Any]:
    """Server-streaming handlers come in two styles: async generators, and coroutines that
    write with context.write() (the health Watch); each is wrapped in its own style."""
    if not inspect.isasyncgenfunction(behavior):
        return _wrap_unary(behavior, method, guard, kind)
    metrics = RpcMetrics(method, kind)

    async def handle(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        if kind == "server_stream":
            metrics.received.inc()
        with _observed(method, metrics, context) as outcome:
            try:
                _enter_call(context, method, guard)
                _refuse_invalid(request)
                async for response in behavior(request, context):
                    metrics.sent.inc()
                    yield response
                outcome.code = "OK"
            except aio.AbortError:
                outcome.code = _code_of(context)
                raise
            except Exception as exc:  # noqa: BLE001
                await _abort_for(exc, context, method, outcome)

    return handle


def intercept_handler(handler: grpc.RpcMethodHandler, method: str, guard: Guard = Guard()) -> grpc.RpcMethodHandler:
    """The handler with the call context (and caller, when guarded) set and AppError mapped to
    rich statuses."""
    guard = replace(guard, gate=gate_of(handler))
    common = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_wrap_unary(handler.unary_unary, method, guard), **common)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_wrap_stream(handler.unary_stream, method, guard), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary(_checking_requests(handler.stream_unary), method, guard, "client_stream"), **common
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(_checking_requests(handler.stream_stream), method, guard, "bidi_stream"), **common
        )
    raise TypeError(f"{method}: a handler of no known kind cannot be served guarded")


class _InterceptedGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    def __init__(self, inner: grpc.GenericRpcHandler, registrar: InterceptingRegistrar) -> None:
        self._inner = inner
        self._registrar = registrar
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in self._wrapped:
            handler = self._inner.service(handler_call_details)
            self._wrapped[method] = intercept_handler(handler, method, self._registrar.guard(method)) if handler else None
        return self._wrapped[method]


class InterceptingRegistrar:
    """Stands in for the server when generated `add_*_to_server` functions register handlers,
    and wraps every handler once, at registration.

    This is the platform's server interceptor. It is applied at registration rather than as a
    grpc.aio ServerInterceptor because the aio interceptor chain runs per call and costs about a
    fifth of a bare server's throughput (scripts/bench); the behaviour is the same.
    """

    def __init__(self, server: aio.Server, local: LocalHandlers | None = None) -> None:
        self._server = server
        self._local = local  # the same wrapped handlers, for colocated callers
        self.authenticator: Authenticator | None = None
        self.public_methods: frozenset[str] = frozenset()  # method names that need no token
        self.mesh_methods: frozenset[str] = frozenset()  # method names every context may call (the platform's own)
        self.importers: Mapping[str, frozenset[str]] = {}  # method path -> contexts that imported it

    def guard(self, method: str, public: bool = False, mesh: bool = False) -> Guard:
        reads_peer = self.authenticator is not None and self.authenticator.reads_peer
        authenticator = None if public else self.authenticator
        return Guard(authenticator, None if mesh else self.importers.get(method, frozenset()), reads_peer=reads_peer)

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_InterceptedGenericHandler(h, self) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {
            name: intercept_handler(
                h,
                f"/{service}/{name}",
                self.guard(f"/{service}/{name}", name in self.public_methods, name in self.mesh_methods),
            )
            for name, h in handlers.items()
        }
        self._server.add_registered_method_handlers(service, wrapped)
        if self._local is not None:
            for name, handler in wrapped.items():
                self._local.add(f"/{service}/{name}", handler)
