"""Host and port joined the way every tool reads them back.

An IPv6 literal has colons of its own, so "::1:5000" is no address (gRPC reads it as
[::0.1.0.0]:443) and "smtp://::1:25" no URL: joined with a port it is bracketed, "[::1]:5000".
A host given bracketed ("[::1]", as a URL writes it) is accepted and unbracketed for what binds
sockets, which takes the bare address.
"""

from __future__ import annotations

import ipaddress

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def bare_host(host: str) -> str:
    """`host` without the brackets a URL puts around an IPv6 literal ("[::1]" -> "::1")."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def host_port(host: str, port: int | str) -> str:
    """ "host:port", with an IPv6 literal bracketed ("[::1]:5000"): what gRPC targets and URLs take."""
    bare = bare_host(host)
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def is_wildcard(host: str) -> bool:
    """Whether binding `host` listens on every address of the machine."""
    return bare_host(host) in WILDCARD_HOSTS


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a server to this machine (a wildcard reaches every host)."""
    bare = bare_host(host)
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


IPV6_HOLDER_PREFIX = 64  # the addresses one IPv6 subscriber holds: a whole /64


def address_holder(host: str) -> str:
    """Who holds the address, for bounds counted per client: an IPv4 address; an IPv6 address's
    /64 (a subscriber is given a whole /64, and would otherwise have 2^64 fresh addresses to
    try from), a link-local one with its link; an IPv4 address mapped into IPv6 is that IPv4
    address. Anything else (a Unix socket's peer, an in-process caller) as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_HOLDER_PREFIX), strict=False)
        return f"{network}%{address.scope_id}" if address.scope_id else str(network)
    return str(address)
