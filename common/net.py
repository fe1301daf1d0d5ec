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
