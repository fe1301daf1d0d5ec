"""The HTTP port's connections against a real bank (`ogpgy up`), over raw sockets, as strangers
would hold them: a connection that sends nothing, a head or a body trickled in or left unfinished
is closed by the bank; one address cannot take the port's connections, nor can 1000 idle ones
from as many addresses; a refused body's answer reaches its caller before the close.

No assertion is on time: a test waits (up to its socket's generous timeout) for the bank to close
a connection, which the bank before these limits never did."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.config import Settings
from common.grpc.http_gateway import HttpGateway
from common.grpc.http_limits import HttpLimits
from mesh.embedded import RunningBank, start_embedded
from tests.conftest import ADMIN_PASSWORD
from tests.integration.http_wire import (
    HttpBank,
    chunk,
    connect,
    envelope,
    head,
    parse_answer,
    read_all,
    stream_until_refused,
)

GET_CUSTOMER = "/ogpgy.customer.v1.CustomerService/GetCustomer"
JSON, GRPC_WEB = "application/json", "application/grpc-web+proto"
PER_ADDRESS = 64  # the default http_connections_per_address
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpBank]:
    """A bank with its default limits."""
    running = HttpBank(tmp_path_factory.mktemp("http-connections")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpBank]:
    """A bank whose read deadlines are one second (through the settings' environment)."""
    running = HttpBank(
        tmp_path_factory.mktemp("http-impatient"),
        OGPGY_HTTP_HEADER_TIMEOUT_SECONDS="1",
        OGPGY_HTTP_BODY_TIMEOUT_SECONDS="1",
    ).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[RunningBank]:
    """A bank in this process, whose handlers a test serves on an HTTP port of its own."""
    running = await start_embedded(Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD))
    try:
        yield running
    finally:
        await running.stop(grace=1)


def _connect6(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("::1", port))
    return sock


def _served(port: int, source: str = "127.0.0.1") -> int:
    """The HTTP status of an ordinary call (no token: 401 when it is served at all)."""
    sock = _connect6(port, source) if ":" in source else connect(port, source=source)
    try:
        body = b'{"customer_id": "cus_1"}'
        sock.sendall(head(GET_CUSTOMER, JSON, len(body), connection="close") + body)
        raw, _ = read_all(sock)
    finally:
        sock.close()
    return parse_answer(raw).status


# -- read deadlines ------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(impatient: HttpBank) -> None:
    sock = connect(impatient.port)
    received, closed = read_all(sock)  # the socket waits up to 30 s
    sock.close()
    assert closed and received == b"", "closed by the bank, with nothing to answer"


def test_a_head_trickled_in_is_closed_before_it_completes(impatient: HttpBank) -> None:
    """One byte every 50 ms (slowloris): bytes arriving do not extend the deadline."""
    request = head(GET_CUSTOMER, JSON, 2) + b"{}"
    sock = connect(impatient.port)
    sock.settimeout(0.05)
    sent = 0
    try:
        for byte in request:
            sock.sendall(bytes([byte]))
            sent += 1
            _, closed = read_all(sock)
            if closed:
                break
    except OSError:
        pass  # the bank closed it while we were sending
    finally:
        sock.close()
    assert sent < len(request), "the bank closed the connection before the head was complete"
    assert _served(impatient.port) == 401, "a request sent in time is served"


def test_an_unfinished_body_is_not_held(impatient: HttpBank) -> None:
    """A head announcing 100 bytes and 10 of them: the bank gives up on the rest and closes."""
    sock = connect(impatient.port)
    sock.sendall(head(GET_CUSTOMER, JSON, 100) + b'{"custome')
    _, closed = read_all(sock)
    sock.close()
    assert closed, "the bank closed the connection"


def test_a_chunked_body_trickled_in_is_closed(impatient: HttpBank) -> None:
    """Chunks keep coming, each in time, but the body never ends: closed all the same."""
    sock = connect(impatient.port)
    sock.settimeout(0.1)
    sock.sendall(head(GET_CUSTOMER, JSON))
    closed = False
    try:
        for _ in range(600):  # a minute of chunks
            sock.sendall(chunk(b" "))
            _, closed = read_all(sock)
            if closed:
                break
    except OSError:
        closed = True
    finally:
        sock.close()
    assert closed, "the bank closed the connection while chunks were still coming"


# -- connections ---------------------------------------------------------------------------------


def test_one_address_cannot_take_the_ports_connections(bank: HttpBank) -> None:
    """1000 idle connections from 127.0.0.2 (the port's whole allowance): all but its share are
    closed at once, and a caller from another address is served meanwhile."""
    held = [connect(bank.port, source="127.0.0.2") for _ in range(1000)]
    try:
        assert _served(bank.port) == 401, "another address is served"
        open_ = len(held) - len(_closed_by_the_bank(held))
        assert open_ <= PER_ADDRESS, f"{open_} connections held by one address"
    finally:
        for sock in held:
            sock.close()


def test_1000_idle_connections_from_as_many_addresses_do_not_close_the_port(bank: HttpBank) -> None:
    """The issue's attack, spread over 1000 addresses (127.0.1.1 ...): each within its share, all
    of them the port's bound. Idle connections give way: the next caller is served, not 503."""
    sources = [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(1000)]
    held = [connect(bank.port, source=source) for source in sources]
    try:
        for n in range(3):
            assert _served(bank.port, source=f"127.0.9.{n + 1}") == 401, "a caller is served, not refused 503"
        closed = _closed_by_the_bank(held)
        assert closed, "idle connections made room"
        assert closed == held[: len(closed)], "the oldest first"
    finally:
        for sock in held:
            sock.close()


async def test_a_dual_stack_port_bounds_an_ipv6_caller_and_each_ipv4_caller_apart(embedded: RunningBank) -> None:
    """A port on the wildcard "::" takes IPv4 callers as ::ffff:a.b.c.d: each IPv4 address keeps
    its own share (they are not one /64), and an IPv6 caller (::1) is held to its /64's share."""
    share = 4
    gateway = HttpGateway(embedded.server.local_handlers, "::", 0, limits=HttpLimits(connections_per_address=share))
    await gateway.start()
    held: list[socket.socket] = []
    try:
        v6 = await asyncio.to_thread(lambda: [_connect6(gateway.port, "::1") for _ in range(3 * share)])
        v4 = await asyncio.to_thread(lambda: [connect(gateway.port, source="127.0.0.2") for _ in range(3 * share)])
        held = v6 + v4
        assert await asyncio.to_thread(_served, gateway.port, "127.0.0.3") == 401, "another IPv4 address is served"
        for socks in (v6, v4):
            closed = await asyncio.to_thread(_closed_by_the_bank, socks)
            assert len(socks) - len(closed) == share, f"{len(socks) - len(closed)} connections kept of {len(socks)}"
    finally:
        for sock in held:
            sock.close()
        await gateway.stop()


def _closed_by_the_bank(socks: list[socket.socket]) -> list[socket.socket]:
    """The sockets the bank has closed (readable at end of file), once the count stops growing."""
    closed: list[socket.socket] = []
    for _ in range(20):
        readable: list[socket.socket] = []
        for start in range(0, len(socks), 500):  # select() takes descriptors below 1024 only: poll instead
            poller = select.poll()
            part = {sock.fileno(): sock for sock in socks[start : start + 500]}
            for descriptor in part:
                poller.register(descriptor, select.POLLIN)
            readable += [part[descriptor] for descriptor, _ in poller.poll(100)]
        if len(readable) == len(closed):
            break
        closed = readable
        time.sleep(0.1)
    return closed


def test_a_refused_body_still_being_sent_gets_its_answer(bank: HttpBank) -> None:
    """A 64 MiB chunked body under an envelope declaring 2 GiB: refused at the prefix while the
    caller is still sending. The bank half-closes and drains before it closes, so its answer is
    not destroyed by the reset that closing over unread input causes (each of 10 tries)."""
    for _ in range(10):
        first = head(GET_CUSTOMER, GRPC_WEB) + chunk(envelope(b"", declared=2**31 - 1))
        answer, sent = stream_until_refused(bank.port, first, (chunk(b"a" * MiB) for _ in range(64)))
        assert answer is not None, "the answer arrived whole"
        assert answer.outcome()[0] == "resource_exhausted"
        assert sent < 64 * MiB
