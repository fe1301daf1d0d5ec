"""Limits before work on an HTTP port's requests: what a caller may make the server hold, inflate
or parse is bounded before it is read, not after (the connections themselves: http_connections).

- A request's body, as sent and once inflated, holds at most `max_body_bytes`: a Content-Length
  over it is refused before a byte is read, a body is counted as it streams in (the server reads
  ahead no more than its flow-control window), gzip inflates piece by piece and stops at the
  limit, and an envelope's declared length is checked when its 5-byte prefix arrives.
- An enveloped body (Connect streams, gRPC-Web) holds exactly one whole envelope: none, a second
  one, or a body ending inside one is malformed (connectrpc answered those `unimplemented`).
- A malformed body is `invalid_argument`, its message naming what is wrong, never the parser's
  words. A JSON message is an object: a body of another JSON value (`[]`, `1`, `"x"`, `null`) is
  malformed too (protobuf's parser iterates what it is given, and took `[]` for an empty message);
  a request carrying both Content-Length and Transfer-Encoding is refused and its
  connection closed (the body may hide a second request: RFC 9112 section 6.1).

connectrpc 0.9 reads (and inflates) a whole body before it checks its size, and answers a
decoding failure UNKNOWN with the parser's text. These are the pieces in front of it.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from common.grpc.status import ERROR_DOMAIN

Scope = MutableMapping[str, Any]
Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ENVELOPE_PREFIX = 5  # flags (1 byte) and length (4 bytes, big-endian) before each enveloped message
_ENVELOPED = ("application/connect+", "application/grpc-web")  # Connect streams and gRPC-Web (one message each here)
_ENCODINGS = ("gzip", "identity")
_GRPC_TIMEOUT = re.compile(r"\d{1,8}[HMSmun]")
_COMPRESSED, _KNOWN_FLAGS = 0b1, 0b1  # a request envelope may only say "compressed"
_JSON_OBJECT = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\n\r]*\{")  # how a JSON object begins (RFC 8259 whitespace)


@dataclass(frozen=True)
class HttpLimits:
    """The bounds of one HTTP port (README, "Over HTTP", lists them as a client meets them)."""

    max_body_bytes: int = 4 * 1024 * 1024  # one request message, as sent and once inflated
    header_timeout: float = 10.0  # seconds for a request's head, from the connection being ready for it
    body_timeout: float = 30.0  # seconds for a body, from its head
    idle_timeout: int = 5  # seconds a kept-alive connection may wait for its next request
    max_connections: int = 1000  # the port's connections; idle ones give way, a request beyond busy ones answers 503
    connections_per_address: int = 64  # one client address's (IPv6: its /64's) connections; the next is closed at once
    max_header_bytes: int = 16 * 1024  # a request's line and headers
    linger: float = 2.0  # seconds a refused body is drained after the answer, before the close


def _info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)


def too_large(limit: int) -> ConnectError:
    return ConnectError(
        Code.RESOURCE_EXHAUSTED,
        f"the request body is larger than the limit of {limit} bytes",
        [_info("REQUEST_TOO_LARGE", limit_bytes=str(limit))],
    )


def malformed(message: str) -> ConnectError:
    return ConnectError(Code.INVALID_ARGUMENT, message, [_info("MALFORMED_REQUEST")])


def unsupported_encoding(name: str) -> ConnectError:
    """As the Connect protocol asks: unimplemented, naming the encodings that are."""
    return ConnectError(
        Code.UNIMPLEMENTED,
        f"unsupported compression {name[:32]!r}: supported are {', '.join(_ENCODINGS)}",
        [_info("UNSUPPORTED_ENCODING")],
    )


class BoundedGzip:
    """gzip for connectrpc, inflating at most `limit` bytes: a small body cannot make a big one.
    The input is fed in pieces: a member's end hands back the rest of its input as a copy, and a
    body of 200,000 empty members would otherwise copy the whole body once for each."""

    PIECE = 4096  # bytes of compressed input fed at a time

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        deflater = zlib.compressobj(6, zlib.DEFLATED, 31)
        return deflater.compress(data) + deflater.flush()

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        inflated = bytearray()
        source = memoryview(data)
        inflater = zlib.decompressobj(wbits=31)
        for start in range(0, len(source), self.PIECE):
            piece: bytes | memoryview = source[start : start + self.PIECE]
            while piece:
                if inflater.eof:  # gzip members, one after another
                    inflater = zlib.decompressobj(wbits=31)
                try:  # never more than one byte over the limit, whatever the piece holds
                    inflated += inflater.decompress(piece, self._limit + 1 - len(inflated))
                except zlib.error:
                    raise malformed("the request body is not valid gzip") from None
                if len(inflated) > self._limit:
                    raise too_large(self._limit)
                piece = inflater.unused_data if inflater.eof else b""
        if not inflater.eof:
            raise malformed("the request body is truncated gzip")
        return bytes(inflated)


class RefusingCodec:
    """A connectrpc codec whose decoding failures are the caller's: `invalid_argument`, naming what
    was expected, never the parser's words (they describe our internals, not the contract)."""

    def __init__(self, codec: Any) -> None:
        self._codec = codec

    def name(self) -> str:
        return str(self._codec.name())

    def encode(self, message: Any) -> bytes:
        return bytes(self._codec.encode(message))

    def decode(self, data: bytes | bytearray, message: Any) -> Any:
        if self.name().startswith("json") and _written_as_object(message) and not _JSON_OBJECT.match(data):
            raise malformed(f"the request body is not a JSON object: a {_kind(message)} is written as {{...}}")
        try:
            return self._codec.decode(data, message)
        except Exception as error:  # noqa: BLE001 - untrusted bytes: whatever the parser raises, the body is at fault
            raise malformed(_what_is_wrong(error, self.name(), message)) from None


def _kind(message: Any) -> str:
    return message.DESCRIPTOR.full_name if isinstance(message, Message) else "request"


def _written_as_object(message: Any) -> bool:
    """Whether the message's JSON form is an object: every message but some of protobuf's own
    well-known types (a Timestamp is a string, a ListValue an array), left to the parser."""
    return isinstance(message, Message) and message.DESCRIPTOR.file.package != "google.protobuf"


def _what_is_wrong(error: Exception, codec: str, message: Any) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "the request body is not UTF-8 text"
    if isinstance(error, RecursionError):
        return "the request body nests too deeply"
    encoding = "JSON" if codec.startswith("json") else "binary protobuf"
    return f"the request body is not a valid {encoding} {_kind(message)}"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def _refusal(headers: list[tuple[bytes, bytes]]) -> str:
    """Why a request is refused on its head alone ("" if it is not): what would smuggle a second
    request, or what connectrpc would fail on with an internal error."""
    names = {key for key, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return "a request may not carry both Content-Length and Transfer-Encoding"
    try:
        for _, value in headers:
            value.decode()
    except UnicodeDecodeError:
        return "a header is not UTF-8 text"
    timeout = _header(headers, b"grpc-timeout")
    if timeout and not _GRPC_TIMEOUT.fullmatch(timeout.decode()):
        return "grpc-timeout is not 1 to 8 digits and a unit (H, M, S, m, u, n)"
    return ""


def _plain_grpc(headers: list[tuple[bytes, bytes]]) -> bool:
    """gRPC's own content type (application/grpc, +proto, +json, ...), which this port does not
    speak (HTTP/2 with trailers: the gRPC port's); gRPC-Web's (application/grpc-web...) it does."""
    kind = (_header(headers, b"content-type") or b"").split(b";", 1)[0].strip().lower()
    return kind == b"application/grpc" or kind.startswith(b"application/grpc+")


async def _refuse(send: Send, reason: str, status: int = 400) -> None:
    """A Connect error answered on the head alone; the connection closes after it."""
    body = json.dumps({"code": "invalid_argument", "message": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Envelopes:
    """Follows the envelopes of a body as it streams in: each declared length is checked against
    the limit when its prefix is complete, before its message is read. The served methods take
    exactly one message (none is client-streaming): a second envelope is refused at its first
    byte, and a body that ends with no envelope, or inside one, is refused at its end (connectrpc
    would take such a body for one with no message and answer unimplemented, a server's failing)."""

    def __init__(self, limit: int, encoding: str) -> None:
        self._limit = limit
        self._encoding = encoding
        self._prefix = bytearray()
        self._left = 0  # bytes of the current message still to come
        self._declared = 0  # the current message's declared length
        self._count = 0  # envelopes begun

    def feed(self, data: bytes) -> None:
        at = 0
        while at < len(data):
            if self._left:
                step = min(self._left, len(data) - at)
                self._left -= step
                at += step
                continue
            if not self._prefix:
                self._begin()
            step = min(ENVELOPE_PREFIX - len(self._prefix), len(data) - at)
            self._prefix += data[at : at + step]
            at += step
            if len(self._prefix) == ENVELOPE_PREFIX:
                flags, self._left = struct.unpack(">BI", self._prefix)
                self._declared = self._left
                self._prefix.clear()
                self._check(flags, self._left)

    def end(self) -> None:
        """The body is complete: it held one whole envelope."""
        if self._prefix:
            raise malformed(
                f"the request body ends inside an envelope's {ENVELOPE_PREFIX}-byte prefix"
                f" ({len(self._prefix)} of its bytes arrived)"
            )
        if self._left:
            arrived = self._declared - self._left
            raise malformed(f"the request body ends inside its message: {self._declared} bytes declared, {arrived} arrived")
        if not self._count:
            raise malformed("the request body holds no message: the method takes one, in an envelope")

    def _begin(self) -> None:
        self._count += 1
        if self._count > 1:
            raise malformed("the request body holds more than one message: the method takes one")

    def _check(self, flags: int, length: int) -> None:
        if length > self._limit:
            raise too_large(self._limit)
        if flags & ~_KNOWN_FLAGS:
            raise malformed("a request envelope sets flags reserved for responses or the future")
        if flags & _COMPRESSED and self._encoding not in _ENCODINGS:
            raise unsupported_encoding(self._encoding)
        if flags & _COMPRESSED and self._encoding == "identity":
            raise malformed("a request envelope is marked compressed but the request names no compression")


class _Body:
    """One request's body as the application reads it: bounded, and followed envelope by
    envelope where it is enveloped."""

    def __init__(self, headers: list[tuple[bytes, bytes]], limit: int) -> None:
        content_type = (_header(headers, b"content-type") or b"").decode().lower()
        enveloped = content_type.startswith(_ENVELOPED)
        self._limit = limit
        self._cap = limit + (ENVELOPE_PREFIX if enveloped else 0)  # the served methods take one message
        self._declared = int(_header(headers, b"content-length") or b"0")
        self._expected = self._declared > 0 or _header(headers, b"transfer-encoding") is not None
        self._encoding = (_header(headers, b"content-encoding") or b"identity").decode().strip().lower()
        stream_encoding = _header(headers, b"connect-content-encoding") or _header(headers, b"grpc-encoding") or b"identity"
        self._envelopes = _Envelopes(limit, stream_encoding.decode().strip().lower()) if enveloped else None
        self._received = 0
        self._complete = not self._expected

    def receiver(self, receive: Receive) -> Receive:
        async def bounded() -> Event:
            self._refuse_early()
            event = await receive()
            if event["type"] == "http.request":
                chunk = event.get("body", b"")
                self._received += len(chunk)
                if self._received > self._cap:
                    raise too_large(self._limit)
                if self._envelopes is not None:
                    self._envelopes.feed(chunk)
                self._complete = not event.get("more_body", False)
                if self._complete and self._envelopes is not None:
                    self._envelopes.end()
            return event

        return bounded

    def _refuse_early(self) -> None:
        """What is known from the head is refused before a byte of the body is read."""
        if self._declared > self._cap:
            raise too_large(self._limit)
        if self._envelopes is None and self._encoding not in _ENCODINGS:
            raise unsupported_encoding(self._encoding)

    def sender(self, send: Send) -> Send:
        async def closing(event: Event) -> None:
            if event["type"] == "http.response.start" and not self._complete:
                # answered before its body was read (refused): what is left of it is never read
                event = {**event, "headers": [*event.get("headers", ()), (b"connection", b"close")]}
            await send(event)

        return closing


class LimitedBodies:
    """ASGI middleware: every request's head checked, its body bounded as it is read."""

    def __init__(self, app: App, limits: HttpLimits) -> None:
        self._app = app
        self._limit = limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = list(scope.get("headers", ()))
        reason = _refusal(headers)
        if reason:
            await _refuse(send, reason)
            return
        if _plain_grpc(headers):
            await _refuse(send, "gRPC is served on the gRPC port; this port speaks Connect and gRPC-Web", 415)
            return
        body = _Body(headers, self._limit)
        await self._app(scope, body.receiver(receive), body.sender(send))
