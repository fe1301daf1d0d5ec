"""Per-call values carried across hops: the correlation id, the caller's deadline, and the
address of the caller a front door passed on.

A server interceptor fills them from the incoming call; a client interceptor puts them on every
outgoing call, because grpc-python propagates neither by itself.
"""

from __future__ import annotations

import contextvars
import ipaddress
import time

REQUEST_ID_HEADER = "x-request-id"
# The address a front door saw its caller at (nginx's $remote_addr), which it sets over any the
# caller sent: taken only from a peer whose certificate names a gateway, or on a port that only
# holders of the mesh's certificates reach.
CLIENT_ADDRESS_HEADER = "x-ogpgy-client-address"


def usable_request_id(value: object) -> bool:
    """Whether a caller's request id is taken as the call's (else the server makes one): printable
    ASCII, 128 characters at most, so that it can go into logs and headers as it came."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ogpgy_request_id", default=None)
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("ogpgy_deadline", default=None)


def remaining_time() -> float | None:
    """Seconds left of the current incoming call's deadline, or None when it has none."""
    deadline = deadline_var.get()
    return None if deadline is None else deadline - time.monotonic()


client_address_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ogpgy_client_address", default=None)


def forwarded_peer(value: str | None) -> str | None:
    """A forwarded address in gRPC's peer form ("ipv4:203.0.113.7:0"); None unless an IP address."""
    try:
        address = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    return f"ipv6:[{address}]:0" if address.version == 6 else f"ipv4:{address}:0"


def caller_peer(peer: str) -> str:
    """Who is calling, as an address: the one a front door passed on for this call, else the
    connection's own (`peer`, what the server saw). Throttles and logs key on it."""
    return client_address_var.get() or peer
