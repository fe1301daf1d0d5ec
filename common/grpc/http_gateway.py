"""HTTP access to every method a server serves: the Connect protocol (JSON or binary, unary and
server streams, over HTTP/1.1) and gRPC-Web, on a port of its own (connectrpc with uvicorn).

A call goes through the very handlers gRPC callers reach, over the in-process channel: the same
authentication, contract rules, error mapping, metrics and logs; an error arrives as a Connect
error with the same rich details (ErrorInfo, BadRequest, RetryInfo, ...). Only the caller's own
headers that gRPC callers could send are passed on (authorization, x-request-id, trace context),
and the caller's address is the one the socket saw. What a caller may make the port hold, inflate,
parse or wait for is bounded before it is read (http_limits.py, http_connections.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc import aio

from common.grpc.call_context import CLIENT_ADDRESS_HEADER, REQUEST_ID_HEADER, forwarded_peer, usable_request_id
from common.grpc.http_connections import Admit, uvicorn_options
from common.grpc.http_limits import BoundedGzip, HttpLimits, LimitedBodies, RefusingCodec
from common.grpc.identity import SUBJECT_HEADER, VIA_HEADER
from common.grpc.inprocess import InProcessChannel, LocalHandlers
from common.grpc.status import rich_status
from common.ids import random_bytes
from common.net import bare_host

# the relay headers too: a user who sends them is refused (RELAY_NOT_ALLOWED) here as over gRPC
FORWARDED_HEADERS = ("authorization", REQUEST_ID_HEADER, "traceparent", "tracestate", SUBJECT_HEADER, VIA_HEADER)
_CODES = {status: Code[status.name] for status in grpc.StatusCode if status.name in Code.__members__}
_CODES[grpc.StatusCode.CANCELLED] = Code.CANCELED

Document = Callable[[], Awaitable[bytes]]  # a JSON document served by GET at a fixed path


@dataclass(frozen=True)
class _Method:
    path: str
    info: MethodInfo[Any, Any]
    server_streaming: bool


def _methods(paths: Iterator[str]) -> Iterator[_Method]:
    """The served methods whose contract this process knows (the contexts' own: health and
    reflection are gRPC's, served on the gRPC port)."""
    pool = descriptor_pool.Default()
    for path in paths:
        service_name, _, name = path.lstrip("/").partition("/")
        try:
            method = pool.FindServiceByName(service_name).methods_by_name[name]
        except KeyError:
            continue
        if method.client_streaming:
            continue  # no contract of ours has one; Connect over HTTP/1.1 could not carry it
        info = MethodInfo(
            name=name,
            service_name=service_name,
            input=message_factory.GetMessageClass(method.input_type),
            output=message_factory.GetMessageClass(method.output_type),
            idempotency_level=IdempotencyLevel.UNKNOWN,
        )
        yield _Method(path, info, method.server_streaming)


def _peer(address: str | None) -> str:
    """The caller's address in the form gRPC gives it ("ipv4:127.0.0.1:5555")."""
    if not address:
        return "unknown"
    host, _, port = address.rpartition(":")
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _call_metadata(context: RequestContext[Any, Any]) -> tuple[tuple[str, str], ...]:
    headers = context.request_headers()
    request_id = headers.get(REQUEST_ID_HEADER, "")
    if not usable_request_id(request_id):
        request_id = random_bytes(16).hex()  # what the server would make: the one echoed is the one logged
    forwarded = tuple((key, value) for key in FORWARDED_HEADERS if key != REQUEST_ID_HEADER for value in headers.getall(key))
    context.response_headers()[REQUEST_ID_HEADER] = request_id  # echoed, as gRPC callers get it
    return (*forwarded, (REQUEST_ID_HEADER, request_id))


def _timeout(context: RequestContext[Any, Any]) -> float | None:
    milliseconds = context.timeout_ms()
    return None if milliseconds is None else milliseconds / 1000


def connect_error(error: aio.AioRpcError) -> ConnectError:
    """The gRPC status as a Connect error, its google.rpc details carried over."""
    status = rich_status(error)
    return ConnectError(_CODES.get(error.code(), Code.UNKNOWN), error.details() or "", status.details if status else ())


async def _fetched(document: Document) -> tuple[int, bytes]:
    """A document's answer: 503 when what serves it does not answer (it is served over the
    in-process channel too)."""
    try:
        return 200, await document()
    except aio.AioRpcError as error:
        return 503, json.dumps({"code": error.code().name.lower(), "message": error.details() or ""}).encode()


class _Gateway(ConnectASGIApplication[LocalHandlers]):
    """Every method of `handlers`, and the documents, on one ASGI application. gzip inflates no
    more than `read_max_bytes`; a body that does not decode is the caller's error. With
    `forwarded`, the caller's address is the one a front door passed on (a port only the mesh's
    certificate holders reach)."""

    def __init__(
        self, handlers: LocalHandlers, documents: Mapping[str, Document], read_max_bytes: int, forwarded: bool = False
    ) -> None:
        super().__init__(
            service=handlers,
            endpoints=self._endpoints_of,
            read_max_bytes=read_max_bytes,
            compressions=[BoundedGzip(read_max_bytes)],
        )
        self._documents = documents
        self._forwarded = forwarded

    # connectrpc (pinned at 0.9) picks the codec from the content type and passes it to these two:
    # the codec they get answers invalid_argument for a body that does not decode
    async def _handle_unary_connect(self, http_method: str, headers: Any, codec: Any, *rest: Any) -> None:
        await super()._handle_unary_connect(http_method, headers, RefusingCodec(codec), *rest)

    async def _handle_stream(self, receive: Any, send: Any, protocol: Any, endpoint: Any, codec: Any, *rest: Any) -> None:
        await super()._handle_stream(receive, send, protocol, endpoint, RefusingCodec(codec), *rest)

    @property
    def path(self) -> str:
        return "/"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        document = self._documents.get(scope.get("path", "")) if scope.get("type") == "http" else None
        if document is None:
            await super().__call__(scope, receive, send)
            return
        status, body = await _fetched(document) if scope.get("method") in ("GET", "HEAD") else (405, b"")
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _endpoints_of(self, handlers: LocalHandlers) -> Mapping[str, Any]:
        return {m.path: self._endpoint(handlers, m, self._forwarded) for m in _methods(iter(handlers.methods()))}

    @staticmethod
    def _endpoint(handlers: LocalHandlers, method: _Method, forwarded: bool) -> Any:
        serialize, parse = method.info.input.SerializeToString, method.info.output.FromString

        def channel(context: RequestContext[Any, Any]) -> InProcessChannel:
            passed_on = forwarded_peer(context.request_headers().get(CLIENT_ADDRESS_HEADER)) if forwarded else None
            return InProcessChannel(handlers, address=passed_on or _peer(context.client_address()))

        if method.server_streaming:

            async def stream(request: Message, context: RequestContext[Any, Any]) -> AsyncIterator[Message]:
                metadata = _call_metadata(context)
                call = channel(context).unary_stream(method.path, serialize, parse)(
                    request, metadata=metadata, timeout=_timeout(context)
                )
                try:
                    async for response in call:
                        yield response
                except aio.AioRpcError as error:
                    raise connect_error(error) from None
                finally:
                    call.cancel()  # the caller went away (or it ended): the handler stops too

            return Endpoint.server_stream(method.info, stream)

        async def unary(request: Message, context: RequestContext[Any, Any]) -> Message:
            metadata = _call_metadata(context)
            call = channel(context).unary_unary(method.path, serialize, parse)
            try:
                response: Message = await call(request, metadata=metadata, timeout=_timeout(context))
            except aio.AioRpcError as error:
                raise connect_error(error) from None
            return response

        return Endpoint.unary(method.info, unary)


class _Server(uvicorn.Server):
    """uvicorn inside the bank's event loop: the bank handles its own signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpGateway:
    """The HTTP port of a server: bound at once (a port another process holds is refused, as the
    gRPC port's is), served from `start` until `stop`."""

    def __init__(
        self,
        handlers: LocalHandlers,
        host: str,
        port: int,
        documents: Mapping[str, Document] | None = None,
        tls: ssl.SSLContext | None = None,
        limits: HttpLimits | None = None,
        *,
        forwarded: bool = False,
        admit: Admit | None = None,
    ) -> None:
        self._socket = _bound(host, port)
        self.port: int = self._socket.getsockname()[1]
        limits = limits or HttpLimits()
        app = LimitedBodies(_Gateway(handlers, documents or {}, limits.max_body_bytes, forwarded), limits)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # the caller's address is the socket's: X-Forwarded-For would let one pose as another
            timeout_graceful_shutdown=5,  # a stream left open (WatchNotifications) does not hold the shutdown
            # connectrpc notices a caller who left a stream only when its next message is due: the
            # connections one port holds are bounded, as abandoned watches may linger; and so are
            # one address's connections, idle ones, and the time a request may take to arrive
            **uvicorn_options(limits, admit),
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            self._socket.close()
            return
        self._server.should_exit = True
        await self._task


def _bound(host: str, port: int) -> socket.socket:
    host = bare_host(host)  # a socket binds the bare address, "::1" not "[::1]"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only; never SO_REUSEPORT
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
