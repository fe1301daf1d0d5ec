"""Colocated calls: the generated stub, an in-process channel, no socket, gRPC's semantics.

When the caller and the callee run in one process, `InProcessChannel` stands in for an
`aio.Channel`: the stub is the same generated class, and the call goes to the very handler the
server registered (so the server interceptors run: request id, deadline, caller, error mapping).
What gRPC would guarantee over the wire is kept:
- every message is copied through its serializer both ways, so contexts never share objects;
- metadata travels as metadata, and the client interceptors (request id, deadline, token) run;
- a deadline is enforced on the caller's side and is visible to the handler (time_remaining);
  when it passes, the handler is cancelled and the caller gets DEADLINE_EXCEEDED;
- an abort reaches the caller as an AioRpcError with its code, details and trailing metadata
  (rich error details included);
- the handler runs in its own task with an empty contextvars context, as it would in a server:
  nothing of the caller's context leaks in, and nothing of the handler's leaks out.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from common.grpc.inprocess_context import Deserializer, Serializer, ServicerContext, copy_message, rpc_error

_END = object()
_LATE = object()  # the handler did not answer within the deadline
_STREAM_BUFFER = 16  # messages a server stream may run ahead of its reader (flow control)


class LocalHandlers:
    """The handlers a server registered, by full method name, for in-process callers.

    Calls are answered only while the server is serving (between `open` and `close`), as a
    socket would only connect then.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self.serving = False

    def add(self, method: str, handler: grpc.RpcMethodHandler) -> None:
        self._handlers[method] = handler

    def methods(self) -> list[str]:
        """Every method registered, by full name ("/package.Service/Method")."""
        return list(self._handlers)

    def open(self) -> None:
        self.serving = True

    def close(self) -> None:
        self.serving = False

    def lookup(self, method: str) -> grpc.RpcMethodHandler:
        if not self.serving:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "the colocated server is not serving")
        handler = self._handlers.get(method)
        if handler is None:
            raise rpc_error(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {method}")
        return handler


@dataclass(frozen=True)
class Endpoint:
    """The handlers a channel reaches, and the identity its calls arrive with (`peer`: the
    SPIFFE id of the calling context, as a certificate would carry it)."""

    handlers: LocalHandlers
    auth: Mapping[str, list[bytes]]
    address: str = "inprocess"  # the caller's address as the handler sees it (context.peer())

    def lookup(self, method: str) -> grpc.RpcMethodHandler:
        return self.handlers.lookup(method)


def _deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _settled(task: asyncio.Task[Any]) -> None:
    """Marks a task's outcome as seen: a call's answer that its caller stopped waiting for, or a
    late handler's, is dropped as gRPC drops it, not reported as "exception never retrieved"."""
    if not task.cancelled():
        task.exception()


def _spawn(coro: Any) -> asyncio.Task[Any]:
    """The handler's task, with a context of its own, as a server would give it."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


class _Call:
    """The parts of an aio.Call a caller may ask of a colocated call."""

    def __init__(self) -> None:
        self._error: aio.AioRpcError | None = None
        self._finished = False
        self._callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Runs `callback(call)` once the call has ended (at once if it has), as aio calls do."""
        if self._finished:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def code(self) -> grpc.StatusCode:
        return self._error.code() if self._error else grpc.StatusCode.OK

    def details(self) -> str:
        return self._error.details() or "" if self._error else ""

    async def initial_metadata(self) -> aio.Metadata:
        return aio.Metadata()

    async def trailing_metadata(self) -> aio.Metadata:
        return self._error.trailing_metadata() if self._error else aio.Metadata()

    def done(self) -> bool:
        return self._finished

    def cancelled(self) -> bool:
        return bool(self._error and self._error.code() == grpc.StatusCode.CANCELLED)

    async def wait_for_connection(self) -> None:
        return None

    def _fail(self, error: aio.AioRpcError) -> aio.AioRpcError:
        if not self._finished:
            self._error = error
        self._finish()
        return error


class _UnaryUnaryCall(_Call):
    def __init__(
        self,
        handlers: Endpoint,
        method: str,
        request: Any,
        details: aio.ClientCallDetails,
        serialize: Serializer,
        deserialize: Deserializer,
    ) -> None:
        super().__init__()
        self._task = asyncio.get_running_loop().create_task(self._run(handlers, method, request, details, serialize, deserialize))
        self._task.add_done_callback(_settled)  # a caller gone before awaiting its answer: not an error to log

    async def _run(
        self,
        handlers: Endpoint,
        method: str,
        request: Any,
        details: aio.ClientCallDetails,
        serialize: Serializer,
        deserialize: Deserializer,
    ) -> Any:
        try:
            handler = handlers.lookup(method)
        except aio.AioRpcError as error:
            raise self._fail(error) from None
        context = ServicerContext(
            aio.Metadata(*(details.metadata or ())), _deadline_of(details.timeout), auth=handlers.auth, address=handlers.address
        )
        served = _spawn(handler.unary_unary(copy_message(serialize, handler.request_deserializer, request), context))
        try:
            # Not asyncio.wait_for: on Python 3.11, a cancellation arriving as the handler finishes
            # is swallowed (the result is returned), and the caller's task then never learns that
            # it was cancelled: a background loop being shut down went on forever.
            done, _ = await asyncio.wait({served}, timeout=details.timeout)
            response = served.result() if done else _LATE
        except aio.AbortError:
            raise self._fail(context.status_error() or rpc_error(grpc.StatusCode.UNKNOWN, "aborted")) from None
        except asyncio.CancelledError:
            served.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - what a server answers for an unexpected error
            raise self._fail(rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}")) from None
        if response is _LATE:
            served.cancel()
            served.add_done_callback(_settled)  # what the late handler ends with is nobody's answer now
            raise self._fail(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
        failed = context.status_error()
        if failed is not None:
            raise self._fail(failed)
        self._finish()
        return copy_message(handler.response_serializer, deserialize, response)

    def __await__(self) -> Any:
        return self._task.__await__()

    def cancel(self) -> bool:
        self._fail(rpc_error(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))
        return self._task.cancel()


class _UnaryStreamCall(_Call):
    def __init__(
        self,
        handlers: Endpoint,
        method: str,
        request: Any,
        details: aio.ClientCallDetails,
        serialize: Serializer,
        deserialize: Deserializer,
    ) -> None:
        super().__init__()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(_STREAM_BUFFER)
        self._deadline = _deadline_of(details.timeout)
        self._context: ServicerContext | None = None
        self._served: asyncio.Task[Any] | None = None
        try:
            handler = handlers.lookup(method)
        except aio.AioRpcError as error:
            self._fail(error)
            return
        self._context = ServicerContext(
            aio.Metadata(*(details.metadata or ())),
            self._deadline,
            self._queue,
            handler.response_serializer,
            deserialize,
            auth=handlers.auth,
            address=handlers.address,
        )
        self._served = _spawn(self._serve(handler, copy_message(serialize, handler.request_deserializer, request), self._context))

    async def _serve(self, handler: grpc.RpcMethodHandler, request: Any, context: ServicerContext) -> None:
        """Runs the handler, in either server-streaming style, and ends the stream with its status."""
        try:
            produced = handler.unary_stream(request, context)
            if hasattr(produced, "__aiter__"):
                async for message in produced:
                    await context.write(message)
            else:
                await produced
            await self._queue.put(context.status_error() or _END)
        except aio.AbortError:
            await self._queue.put(context.status_error() or rpc_error(grpc.StatusCode.UNKNOWN, "aborted"))
        except Exception as exc:  # noqa: BLE001 - what a server answers for an unexpected error
            await self._queue.put(rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc).__name__}"))

    async def read(self) -> Any:
        """The next message, or grpc.aio.EOF at the end."""
        if self._error is not None:
            raise self._error
        if self._finished:
            return aio.EOF
        remaining = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)
        getter = asyncio.ensure_future(self._queue.get())
        try:
            done, _ = await asyncio.wait({getter}, timeout=remaining)  # not wait_for: see _UnaryUnaryCall
        except asyncio.CancelledError:
            getter.cancel()
            self._stop()
            raise
        if not done:
            getter.cancel()
            self._stop()
            raise self._fail(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
        item = getter.result()
        if item is _END:
            self._finish()
            return aio.EOF
        if isinstance(item, aio.AioRpcError):
            raise self._fail(item)
        return item

    async def _messages(self) -> AsyncIterator[Any]:
        while (message := await self.read()) is not aio.EOF:
            yield message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    def _stop(self) -> None:
        if self._served is not None:
            self._served.cancel()

    def cancel(self) -> bool:
        self._stop()
        self._fail(rpc_error(grpc.StatusCode.CANCELLED, "Locally cancelled by application!"))
        return True


class _MultiCallable:
    """One method of the channel; applies the channel's client interceptors of its kind."""

    def __init__(
        self, channel: InProcessChannel, method: str, kind: str, serialize: Serializer, deserialize: Deserializer
    ) -> None:
        self._channel = channel
        self._method = method
        self._kind = kind
        self._serialize, self._deserialize = serialize, deserialize
        self._chain = [i for i in channel.interceptors if hasattr(i, f"intercept_{kind}")]  # once, not per call

    def _terminal(self, details: aio.ClientCallDetails, request: Any) -> _Call:
        call_type = _UnaryUnaryCall if self._kind == "unary_unary" else _UnaryStreamCall
        return call_type(self._channel.endpoint, self._method, request, details, self._serialize, self._deserialize)

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, Any]] | None = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        details = aio.ClientCallDetails(self._method, timeout, aio.Metadata(*(metadata or ())), credentials, wait_for_ready)
        if not self._chain:
            return self._terminal(details, request)
        return _Intercepted(self._kind, self._chain, self._terminal, details, request)


class _Intercepted:
    """A call passed through client interceptors first (each may rewrite the call details)."""

    def __init__(
        self,
        kind: str,
        chain: list[Any],
        terminal: Callable[[aio.ClientCallDetails, Any], _Call],
        details: aio.ClientCallDetails,
        request: Any,
    ) -> None:
        self._kind = kind
        self._call: asyncio.Task[Any] = asyncio.get_running_loop().create_task(self._through(chain, terminal, details, request))

    async def _through(
        self,
        chain: list[Any],
        terminal: Callable[[aio.ClientCallDetails, Any], _Call],
        details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        async def at(index: int, details: aio.ClientCallDetails, request: Any) -> Any:
            if index == len(chain):
                return terminal(details, request)
            return await getattr(chain[index], f"intercept_{self._kind}")(functools.partial(at, index + 1), details, request)

        return await at(0, details, request)

    async def _response(self) -> Any:
        outcome = await self._call
        return await outcome if isinstance(outcome, _UnaryUnaryCall) else outcome

    def __await__(self) -> Any:
        return self._response().__await__()

    async def _messages(self) -> AsyncIterator[Any]:
        async for message in await self._call:
            yield message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def read(self) -> Any:
        return await (await self._call).read()


class InProcessChannel:
    """An aio.Channel look-alike whose calls are answered by handlers in this process."""

    def __init__(
        self, handlers: LocalHandlers, interceptors: Sequence[Any] = (), *, peer: str = "", address: str = "inprocess"
    ) -> None:
        """`peer`: the SPIFFE id of the calling context; `address`: the outside caller's address
        (a gateway's caller), for what a handler decides by address (login throttling)."""
        self.handlers = handlers
        self.endpoint = Endpoint(handlers, {"peer_spiffe_id": [peer.encode()]} if peer else {}, address)
        self.interceptors = list(interceptors)

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> _MultiCallable:
        return _MultiCallable(self, method, "unary_unary", request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer = None,
        response_deserializer: Deserializer = None,
        _registered_method: bool | None = False,
    ) -> _MultiCallable:
        return _MultiCallable(self, method, "unary_stream", request_serializer, response_deserializer)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("client-streaming methods are not part of any contract")

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("bidirectional methods are not part of any contract")

    async def channel_ready(self) -> None:
        return None

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY if self.handlers.serving else grpc.ChannelConnectivity.IDLE

    async def close(self, grace: float | None = None) -> None:
        return None

    async def __aenter__(self) -> InProcessChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
