"""TLS for the bank's servers and channels, with certificates from the bank's own CA.

A server's certificate is reissued before it expires, without a restart: gRPC asks for the
certificate configuration on every new connection (`dynamic_ssl_server_credentials`), and gets a
new one once the current one is past two thirds of its life. Connections already open keep the
certificate they were made with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from common.security.pki import LEAF_LIFETIME, CertificateAuthority, Issued, load

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine (a wildcard reaches every host)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class _Presented:
    """The certificate a server presents, replaced for new connections when `_next` has one
    (thread-safe: gRPC asks from its own threads)."""

    def __init__(self, current: Issued, ca_certificate: bytes) -> None:
        self.current = current
        self._ca = ca_certificate
        self._lock = threading.Lock()

    def _next(self) -> Issued | None:
        """A certificate to present from now on; None keeps the current one."""
        raise NotImplementedError

    def _configuration(self, issued: Issued) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(issued.private_key, issued.certificate)], root_certificates=self._ca)

    def _renewed(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            following = self._next()
            if following is None:
                return None
            self.current = following
            return self._configuration(following)

    def credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self.current), self._renewed, require_client_authentication=require_client_certificate
        )


class ServerCertificate(_Presented):
    """A certificate this process issues itself (it holds the CA: one process, `ogpgy up --tls`),
    renewed once past two thirds of its life."""

    def __init__(
        self,
        authority: CertificateAuthority,
        identity: str | None,
        *,
        hosts: Iterable[str] = (),
        lifetime: timedelta = LEAF_LIFETIME,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._authority = authority
        self._identity = identity
        self._hosts = tuple(hosts)
        self._lifetime = lifetime
        self._clock = clock
        super().__init__(self._issue(), authority.certificate_pem)
        self.issued = 1  # how many certificates this server has presented (rotation is visible)

    def _issue(self) -> Issued:
        return self._authority.issue(self._identity, hosts=self._hosts, lifetime=self._lifetime, now=self._clock())

    def _next(self) -> Issued | None:
        if not self.current.renew_after(self._clock(), self._lifetime):
            return None
        self.issued += 1
        return self._issue()


class CertificateFile(_Presented):
    """A certificate someone else issues into files (`<name>.pem`, `<name>.key`): read again
    when the file changes, so that a renewed certificate serves new connections."""

    def __init__(self, directory: Path, name: str, ca_certificate: bytes) -> None:
        self._directory, self._name = directory, name
        self._stamp = self._modified()
        super().__init__(load(directory, name), ca_certificate)

    def _modified(self) -> int:
        return (self._directory / f"{self._name}.pem").stat().st_mtime_ns

    def _next(self) -> Issued | None:
        stamp = self._modified()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        return load(self._directory, self._name)


def tls_options(target: str) -> list[tuple[str, str]]:
    """The name a TLS channel verifies the server by: for a list of addresses (`ipv4:a:1,b:2`,
    which round_robin balances over) gRPC has no host to check, so the first one's is named."""
    scheme, _, addresses = target.partition(":")
    if scheme not in ("ipv4", "ipv6") or not addresses:
        return []
    first = addresses.split(",")[0].rsplit(":", 1)[0].strip("[]")
    return [("grpc.ssl_target_name_override", first)]


def channel_credentials(ca_certificate: bytes, client: Issued | None = None) -> grpc.ChannelCredentials:
    """Credentials of a channel that trusts only the bank's CA (and presents `client`, if given)."""
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca_certificate)
    return grpc.ssl_channel_credentials(ca_certificate, client.private_key, client.certificate)
