"""Whose connections the HTTP port's per-address bound counts together (common/grpc/http_connections.py):
an IPv4 address alone, an IPv6 address with the rest of its /64 (one host's least allocation, within
which it may take any address), an IPv4 caller of a dual-stack socket as its IPv4 address. Over
uvicorn's own protocol, the addresses given by asyncio transports that stand for sockets (this
machine holds one IPv6 address per /64: a real socket cannot come from a second one)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, cast

import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.server import ServerState

from common.grpc.http_connections import guarded_protocol
from common.grpc.http_limits import HttpLimits
from common.net import address_holder as address_key

_V6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)
_V4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(a=_V6, b=_V6)
def test_two_ipv6_addresses_count_together_exactly_when_they_share_their_first_64_bits(
    a: ipaddress.IPv6Address, b: ipaddress.IPv6Address
) -> None:
    if a.ipv4_mapped is not None or b.ipv4_mapped is not None:
        return  # an IPv4 caller, below
    same_64 = int(a) >> 64 == int(b) >> 64
    assert (address_key(str(a)) == address_key(str(b))) == same_64


@given(a=_V4, b=_V4)
def test_ipv4_addresses_count_one_by_one_whether_or_not_the_socket_is_dual_stack(
    a: ipaddress.IPv4Address, b: ipaddress.IPv4Address
) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{a}")
    assert address_key(str(a)) == address_key(str(mapped)) == str(a)
    assert (address_key(str(a)) == address_key(f"::ffff:{b}")) == (a == b), "not all of ::ffff:0:0/96 as one"


def test_a_link_local_prefix_is_counted_per_link_and_a_name_as_it_is() -> None:
    assert address_key("fe80::1%eth0") == address_key("fe80::2%eth0") != address_key("fe80::1%eth1")
    assert address_key("") == "" and address_key("/run/bank.sock") == "/run/bank.sock"


class _Transport:
    """What uvicorn's protocol asks of a connection's transport, for a client at `peer`."""

    def __init__(self, peer: tuple[Any, ...]) -> None:
        self._extra = {"peername": peer, "sockname": ("::", 8080)}
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_write_buffer_limits(self, *args: Any, **kwargs: Any) -> None: ...


async def _app(scope: Any, receive: Any, send: Any) -> None: ...


async def test_the_port_closes_a_64s_connections_beyond_the_bound_whatever_addresses_they_take() -> None:
    """Five connections from five addresses of 2001:db8:0:1::/64, two allowed: three closed at once;
    one from the next /64, and one from an IPv4 address mapped to IPv6, are kept."""
    protocol = guarded_protocol(HttpLimits(connections_per_address=2))
    config, state = uvicorn.Config(_app, lifespan="off", log_config=None), ServerState()
    peers = [f"2001:db8:0:1:{n:x}::{n + 1:x}" for n in range(5)] + ["2001:db8:0:2::1", "::ffff:192.0.2.1"]
    connections = [(protocol(config=config, server_state=state, app_state={}), _Transport((peer, 40000))) for peer in peers]
    try:
        for connection, transport in connections:
            connection.connection_made(cast(asyncio.Transport, transport))  # it stands in for a socket's
        assert [t.closed for _, t in connections] == [False, False, True, True, True, False, False], (
            dict(protocol.addresses),
            [c.client for c, _ in connections],
        )
    finally:
        for connection, _ in connections:
            connection.connection_lost(None)
