"""TLS for the bank's servers and channels, with certificates from the bank's own CA.

A server's certificate is reissued before it expires, without a restart: gRPC asks for the
certificate configuration on every new connection (`dynamic_ssl_server_credentials`), and gets a
new one once the current one is past two thirds of its life. Connections already open keep the
certificate they were made with.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from common.security.pki import LEAF_LIFETIME, CertificateAuthority, Issued, load


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

    def ssl_context(self, client_ca: bytes | None = None) -> ssl.SSLContext:
        """The certificate for an HTTPS server (the gateway's port): each handshake asks for a
        renewal, as gRPC does, and a renewed certificate serves new connections. Give each port a
        presenter of its own: the renewal goes to whoever asks first. With `client_ca`, a client
        must present a certificate of that CA (mutual TLS, as the gRPC port of a mesh process)."""
        contexts = [_server_ssl_context(self.current, client_ca)]

        def on_hello(connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
            if self._renewed() is not None:
                contexts[0] = _server_ssl_context(self.current, client_ca)
                contexts[0].sni_callback = on_hello
            connection.context = contexts[0]

        contexts[0].sni_callback = on_hello
        return contexts[0]

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
        self.authority = authority
        self._identity = identity
        self._hosts = tuple(hosts)
        self._lifetime = lifetime
        self._clock = clock
        super().__init__(self._issue(), authority.certificate_pem)
        self.issued = 1  # how many certificates this server has presented (rotation is visible)

    def _issue(self) -> Issued:
        return self.authority.issue(self._identity, hosts=self._hosts, lifetime=self._lifetime, now=self._clock())

    def _next(self) -> Issued | None:
        if not self.current.renew_after(self._clock(), self._lifetime):
            return None
        self.issued += 1
        return self._issue()


class CertificateFile(_Presented):
    """A certificate someone else issues into files (`<name>.pem`, `<name>.key`): read again
    when the file changes, so that a renewed certificate serves new connections."""

    def __init__(self, directory: Path, name: str, ca_certificate: bytes) -> None:
        self.directory, self.name = directory, name
        self._stamp = self._modified()
        super().__init__(load(directory, name), ca_certificate)

    def _modified(self) -> int:
        return (self.directory / f"{self.name}.pem").stat().st_mtime_ns

    def _next(self) -> Issued | None:
        stamp = self._modified()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        return load(self.directory, self.name)


def _server_ssl_context(issued: Issued, client_ca: bytes | None = None) -> ssl.SSLContext:
    """An SSLContext presenting `issued` (and demanding a certificate of `client_ca`, if given):
    the ssl module loads a key only from a file, so the PEMs pass through a private temporary
    directory, removed at once."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
    with tempfile.TemporaryDirectory() as private:  # mode 0700
        certificate, key = Path(private) / "server.pem", Path(private) / "server.key"
        certificate.write_bytes(issued.certificate)
        key.touch(mode=0o600)
        key.write_bytes(issued.private_key)
        context.load_cert_chain(certificate, key)
    return context


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


class RenewingChannel:
    """A channel whose TLS credentials are renewed under it: each call goes out on a channel made
    with the credentials `credentials()` gives now, so that new connections present a renewed
    client certificate (a certificate opened with would expire under a long-running process).
    Stubs made on it keep working across renewals; channels made with older credentials stay open
    for the calls still on them and are closed with this one."""

    def __init__(
        self, open_channel: Callable[[grpc.ChannelCredentials], aio.Channel], credentials: Callable[[], grpc.ChannelCredentials]
    ) -> None:
        self._open = open_channel
        self._credentials = credentials
        self._current: tuple[grpc.ChannelCredentials, aio.Channel] | None = None
        self._retired: list[aio.Channel] = []
        self._callables: dict[tuple[int, str, str], Any] = {}

    def current(self) -> aio.Channel:
        credentials = self._credentials()
        if self._current is None or self._current[0] is not credentials:
            if self._current is not None:
                self._retired.append(self._current[1])
                self._callables.clear()
            self._current = (credentials, self._open(credentials))
        return self._current[1]

    def _callable(self, kind: str, method: str, serialize: Any, deserialize: Any) -> Any:
        channel = self.current()
        key = (id(channel), kind, method)
        found = self._callables.get(key)
        if found is None:
            found = self._callables[key] = getattr(channel, kind)(method, serialize, deserialize)
        return found

    def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any) -> Any:
        return _Renewing(self, "unary_unary", method, request_serializer, response_deserializer)

    def unary_stream(self, method: str, request_serializer: Any = None, response_deserializer: Any = None, **_: Any) -> Any:
        return _Renewing(self, "unary_stream", method, request_serializer, response_deserializer)

    async def close(self, grace: float | None = None) -> None:
        channels = [*self._retired, *([self._current[1]] if self._current else [])]
        self._retired, self._current = [], None
        for channel in channels:
            await channel.close(grace)


class _Renewing:
    """One method of a RenewingChannel: each call on the channel of the current credentials."""

    def __init__(self, owner: RenewingChannel, kind: str, method: str, serialize: Any, deserialize: Any) -> None:
        self._owner, self._kind, self._method = owner, kind, method
        self._serialize, self._deserialize = serialize, deserialize

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self._owner._callable(self._kind, self._method, self._serialize, self._deserialize)(request, **kwargs)
