"""Host and port joined so that gRPC and URL parsers read back the host that was given."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from common.net import bare_host, host_port, is_loopback, is_wildcard


@pytest.mark.parametrize(
    ("host", "joined"),
    [("127.0.0.1", "127.0.0.1:5000"), ("localhost", "localhost:5000"), ("::1", "[::1]:5000"), ("[::1]", "[::1]:5000")],
)
def test_an_ipv6_literal_is_bracketed_once_and_reads_back_as_given(host: str, joined: str) -> None:
    assert host_port(host, 5000) == joined
    parts = urlsplit(f"smtp://{joined}")
    assert (parts.hostname, parts.port) == (bare_host(host), 5000)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.1", "127.example.com", "example.com", "[::2]"])
def test_other_hosts_and_wildcards_are_not(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(("host", "wildcard"), [("", True), ("0.0.0.0", True), ("::", True), ("[::]", True), ("::1", False)])
def test_a_wildcard_is_known_bracketed_or_not(host: str, wildcard: bool) -> None:
    assert is_wildcard(host) is wildcard
