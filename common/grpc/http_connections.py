"""The connections of an HTTP port: what one caller, or many idle ones, can make the port hold.

uvicorn bounds a request's head (`h11_max_incomplete_event_size`), the wait between two requests
of a kept-alive connection (`timeout_keep_alive`) and the requests it runs at once
(`limit_concurrency`, 503 beyond); those knobs are used as they are. It has no deadline for a
request to arrive (encode/uvicorn#157: a connection that sends nothing, or one byte a second, is
held for ever), no bound on one address's connections, and its 503 beyond `limit_concurrency`
counts idle connections as busy: 1000 silent sockets closed the port for everyone. The protocol
below adds these on uvicorn's own HTTP/1.1 protocol (h11), following the client's side of the
exchange as h11 reports it:

- waiting for a request's head: `header_timeout`; reading its body: `body_timeout`; bytes
  arriving extend neither (a caller trickling bytes is closed like a silent one); once the
  request is in, the server is the one working and no read deadline runs;
- one address holds at most `connections_per_address` connections: the next is closed at once.
  An IPv4 address counts alone; an IPv6 one counts with its /64, the least a single host is given
  (RFC 6177; SLAAC picks addresses within it at will, so per address it would be no bound at all);
  an IPv4 caller of a dual-stack socket (`::ffff:a.b.c.d`) counts as its IPv4 address;
- over `max_connections`, the oldest connection with no request in progress makes room;
- a connection closed while its client is still sending a body the server will not read is
  half-closed first and drained for a moment (RFC 9112, section 9.6): closing a socket with
  unread input resets it, and the reset destroys the answer still in flight (the refusal).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from common.grpc.http_limits import HttpLimits
from common.net import address_holder

Admit = Callable[[str | None], bool]  # whether a client whose verified certificate names this URI may connect


def uvicorn_options(limits: HttpLimits, admit: Admit | None = None) -> dict[str, Any]:
    """The uvicorn.Config arguments that apply `limits` to connections (and `admit` to the
    client certificate of each, on a port with mutual TLS)."""
    return {
        "http": guarded_protocol(limits, admit),
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "timeout_keep_alive": limits.idle_timeout,
        "limit_concurrency": limits.max_connections,
    }


def guarded_protocol(limits: HttpLimits, admit: Admit | None = None) -> type[H11Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits` and to the
    connections of one port."""
    fields = {"limits": limits, "admission": _Admission(admit), "addresses": Counter(), "opened": {}}
    return type("GuardedProtocol", (_GuardedProtocol,), fields)


@dataclass(frozen=True)
class _Admission:
    admit: Admit | None  # None: anyone the TLS admits

    def refuses(self, transport: asyncio.BaseTransport) -> bool:
        return self.admit is not None and not self.admit(_peer_uri(transport))


def _peer_uri(transport: asyncio.BaseTransport) -> str | None:
    """The URI (a SPIFFE id) the client's verified certificate holds, if it presented one."""
    tls = transport.get_extra_info("ssl_object")
    certificate = tls.getpeercert() if tls is not None else None
    uris = [value for kind, value in (certificate or {}).get("subjectAltName", ()) if kind == "URI"]
    return uris[0] if len(uris) == 1 else None


class _LingeringTransport:
    """A connection's transport as uvicorn sees it: its `close`, while the client is still sending
    a body, half-closes (the answer goes out, then a FIN), drains what comes for `linger` seconds
    at most, and closes when the client does or the time is up."""

    def __init__(self, transport: asyncio.Transport, protocol: _GuardedProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        unread = self._protocol.conn.their_state is h11.SEND_BODY
        if not unread or not self._transport.can_write_eof():  # TLS cannot half-close: closed as it is
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()
        self._transport.resume_reading()
        self._timer = asyncio.get_running_loop().call_later(self._protocol.limits.linger, self.close_now)

    def close_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.close()


class _GuardedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with read deadlines, bounded connections and a lingering close."""

    limits: ClassVar[HttpLimits]
    admission: ClassVar[_Admission]  # who may connect, by the URI of their certificate
    addresses: ClassVar[Counter[str]]  # the open connections of each client address (`address_holder`), on this port
    opened: ClassVar[dict[_GuardedProtocol, None]]  # this port's connections, oldest first

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: object = None
        self._host = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows it too
        if self.admission.refuses(transport):  # after the handshake, before a byte is read
            transport.abort()
            return
        self._lingering = _LingeringTransport(transport, self)
        super().connection_made(self._lingering)  # type: ignore[arg-type]  # it stands in for the transport
        self._host = address_holder(self.client[0]) if self.client else ""
        self.opened[self] = None
        self.addresses[self._host] += 1
        if self.addresses[self._host] > self.limits.connections_per_address:
            self._lingering.close_now()
            return
        self._make_room()
        self._follow()

    def _make_room(self) -> None:
        """Over the port's bound, the oldest idle connections are closed for the new one (if
        none is idle, uvicorn answers its request 503)."""
        if len(self.connections) < self.limits.max_connections:
            return
        live = sum(not other.transport.is_closing() for other in self.opened)
        excess = live - self.limits.max_connections + 1  # the new one is served only below the bound
        for other in self.opened:  # oldest first (closing one removes nothing yet: connection_lost does)
            if excess <= 0:
                return
            if other is not self and other.idle and not other.transport.is_closing():
                other._lingering.close_now()
                excess -= 1

    @property
    def idle(self) -> bool:
        """No request in progress: none begun since the connection opened or the last answer."""
        return self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        if self._lingering.lingering:
            return  # the rest of a refused body: dropped unread
        super().data_received(data)
        self._follow()

    def eof_received(self) -> None:
        if self._lingering.lingering:
            self._lingering.close_now()  # the client is done: so is the drain
        super().eof_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None, None)
        self._lingering.close_now()
        self.opened.pop(self, None)
        self.addresses[self._host] -= 1
        if self.addresses[self._host] <= 0:
            del self.addresses[self._host]
        super().connection_lost(exc)

    def _follow(self) -> None:
        """The deadline of the phase the client is in; the running one is kept while it lasts."""
        if self.transport.is_closing():
            self._arm(None, None)
        elif self.conn.their_state is h11.IDLE:
            self._arm(h11.IDLE, self.limits.header_timeout)
        elif self.conn.their_state is h11.SEND_BODY:
            self._arm(h11.SEND_BODY, self.limits.body_timeout)
        else:
            self._arm(None, None)

    def _arm(self, phase: object, seconds: float | None) -> None:
        if phase is not None and phase is self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._phase = phase
        self._deadline = None if seconds is None else self.loop.call_later(seconds, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self._lingering.close_now()
