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

import grpc

from common.security.pki import LEAF_LIFETIME, CertificateAuthority, Issued

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine (a wildcard reaches every host)."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class ServerCertificate:
    """The certificate a server presents, renewed before it expires (thread-safe: gRPC fetches
    it from its own threads)."""

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
        self._lock = threading.Lock()
        self.current = self._issue()
        self.issued = 1  # how many certificates this server has presented (rotation is visible)

    def _issue(self) -> Issued:
        return self._authority.issue(self._identity, hosts=self._hosts, lifetime=self._lifetime, now=self._clock())

    def _configuration(self, issued: Issued) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(issued.private_key, issued.certificate)], root_certificates=self._authority.certificate_pem
        )

    def _renewed(self) -> grpc.ServerCertificateConfiguration | None:
        """None keeps the current certificate; a configuration replaces it for new connections."""
        with self._lock:
            if not self.current.renew_after(self._clock(), self._lifetime):
                return None
            self.current = self._issue()
            self.issued += 1
            return self._configuration(self.current)

    def credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self.current), self._renewed, require_client_authentication=require_client_certificate
        )


def channel_credentials(ca_certificate: bytes, client: Issued | None = None) -> grpc.ChannelCredentials:
    """Credentials of a channel that trusts only the bank's CA (and presents `client`, if given)."""
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca_certificate)
    return grpc.ssl_channel_credentials(ca_certificate, client.private_key, client.certificate)
