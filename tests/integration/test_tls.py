"""TLS with the bank's own CA: a client must trust it, a server may demand a certificate of the
same CA (another CA's, an expired one or none fails the handshake), a plaintext bind beyond
loopback is refused, and a server's certificate is renewed under load without a failed call."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.config import Settings
from common.grpc.server import GrpcServer
from common.grpc.tls import RenewingChannel, ServerCertificate, channel_credentials
from common.security.pki import CertificateAuthority, save, spiffe_id
from mesh.embedded import start_embedded
from mesh.pki import MutualTls, mutual_tls
from ogpgy.identity.v1 import identity_service_pb2 as identity_pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as identity_grpc
from tests.conftest import ADMIN_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
CHECK = health_pb2.HealthCheckRequest()


async def _health(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of one health check on a new connection (OK, or why it failed)."""
    channel = aio.insecure_channel(target) if credentials is None else aio.secure_channel(target, credentials)
    async with channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=3)
        except grpc.RpcError as failed:
            return failed.code()
    return grpc.StatusCode.OK


async def test_a_bank_served_with_tls_answers_only_clients_that_trust_its_ca(tmp_path: Path) -> None:
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0, tls=True, admin_password=ADMIN_PASSWORD))
    try:
        ca = (tmp_path / "pki" / "ca.pem").read_bytes()
        async with aio.secure_channel(bank.target, channel_credentials(ca)) as channel:
            answer = await identity_grpc.IdentityServiceStub(channel).IssueToken(
                identity_pb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD), timeout=5
            )
        assert answer.access_token
        assert await _health(bank.target, None) == grpc.StatusCode.UNAVAILABLE  # plaintext: no handshake
        stranger = CertificateAuthority.create().certificate_pem
        assert await _health(bank.target, channel_credentials(stranger)) == grpc.StatusCode.UNAVAILABLE
    finally:
        await bank.stop(1)


@pytest.fixture
async def mutual(tmp_path: Path) -> AsyncIterator[tuple[str, CertificateAuthority]]:
    """A server that demands a client certificate of its CA."""
    authority = CertificateAuthority.create()
    server = GrpcServer()
    certificate = ServerCertificate(authority, spiffe_id("context", "account"))
    port = server.bind("127.0.0.1:0", certificate.credentials(require_client_certificate=True))
    await server.start()
    yield f"localhost:{port}", authority
    await server.stop(0)


async def test_a_mutual_tls_server_refuses_no_certificate_another_cas_and_an_expired_one(
    mutual: tuple[str, CertificateAuthority],
) -> None:
    target, authority = mutual
    ca = authority.certificate_pem
    client = authority.issue(spiffe_id("context", "payment"))
    foreign = CertificateAuthority.create().issue(spiffe_id("context", "payment"))
    past = datetime.now(UTC) - timedelta(days=2)
    expired = authority.issue(spiffe_id("context", "payment"), lifetime=timedelta(hours=1), now=past)
    assert await _health(target, channel_credentials(ca, client)) == grpc.StatusCode.OK
    assert await _health(target, channel_credentials(ca)) == grpc.StatusCode.UNAVAILABLE
    assert await _health(target, channel_credentials(ca, foreign)) == grpc.StatusCode.UNAVAILABLE
    assert await _health(target, channel_credentials(ca, expired)) == grpc.StatusCode.UNAVAILABLE


def _served_serial(port: int, ca: bytes) -> int:
    """The serial number of the certificate a new TLS connection to the server is shown."""
    context = ssl.create_default_context(cadata=ca.decode())
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_the_servers_certificate_is_renewed_under_load_without_a_failed_call() -> None:
    authority = CertificateAuthority.create()
    certificate = ServerCertificate(authority, None, lifetime=timedelta(seconds=3))  # renewed every 2 s
    server = GrpcServer()
    port = server.bind("127.0.0.1:0", certificate.credentials(require_client_certificate=False))
    await server.start()
    credentials = channel_credentials(authority.certificate_pem)
    target = f"localhost:{port}"
    first = await asyncio.to_thread(_served_serial, port, authority.certificate_pem)
    results: list[grpc.StatusCode] = []
    try:
        async with aio.secure_channel(target, credentials) as kept:  # one connection kept throughout
            stub = health_pb2_grpc.HealthStub(kept)
            deadline = asyncio.get_running_loop().time() + 5
            while asyncio.get_running_loop().time() < deadline:
                fresh = [_health(target, credentials) for _ in range(4)]  # new connections, new handshakes
                results += await asyncio.gather(*fresh)
                await stub.Check(CHECK, timeout=3)
                results.append(grpc.StatusCode.OK)
        last = await asyncio.to_thread(_served_serial, port, authority.certificate_pem)
    finally:
        await server.stop(0)
    assert certificate.issued >= 3, "the certificate was not renewed"
    assert last != first and last == x509.load_pem_x509_certificate(certificate.current.certificate).serial_number
    assert results and set(results) == {grpc.StatusCode.OK}, [r for r in results if r != grpc.StatusCode.OK][:3]


def test_a_plaintext_bind_beyond_loopback_is_refused_with_the_way_out(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "up", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve plaintext on 0.0.0.0" in result.stderr and "--tls" in result.stderr
    assert not (tmp_path / "pki").exists()


async def _mutual_server(authority: CertificateAuthority, port: int = 0) -> tuple[GrpcServer, int]:
    server = GrpcServer()
    certificate = ServerCertificate(authority, spiffe_id("context", "account"))
    bound = server.bind(f"127.0.0.1:{port}", certificate.credentials(require_client_certificate=True))
    await server.start()
    return server, bound


async def test_a_renewing_channel_reconnects_with_the_renewed_client_certificate() -> None:
    """A process outlives its first client certificate: when its connection has to be made again
    (here: the server restarted), a channel opened with the first fails the handshake, while a
    renewing channel's stubs go on with the renewed certificate."""
    authority = CertificateAuthority.create()
    ca, server_port = authority.certificate_pem, 0
    server, server_port = await _mutual_server(authority)
    target = f"localhost:{server_port}"
    first = authority.issue(spiffe_id("context", "payment"), lifetime=timedelta(seconds=2))
    current = {"credentials": channel_credentials(ca, first)}
    renewing = RenewingChannel(lambda c: aio.secure_channel(target, c), lambda: current["credentials"])
    fixed = aio.secure_channel(target, channel_credentials(ca, first))
    try:
        for channel in (renewing, fixed):
            await health_pb2_grpc.HealthStub(channel).Check(CHECK, timeout=3)
        await asyncio.sleep((first.not_after - datetime.now(UTC)).total_seconds() + 1.1)  # the first has expired
        current["credentials"] = channel_credentials(ca, authority.issue(spiffe_id("context", "payment")))
        await server.stop(0)
        server, _ = await _mutual_server(authority, server_port)  # every connection is made again
        await health_pb2_grpc.HealthStub(renewing).Check(CHECK, timeout=3)
        with pytest.raises(grpc.RpcError) as failed:
            await health_pb2_grpc.HealthStub(fixed).Check(CHECK, timeout=3)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await renewing.close()
        await fixed.close()
        await server.stop(0)


def test_a_process_reads_its_renewed_client_certificate(tmp_path: Path) -> None:
    authority = CertificateAuthority.open(tmp_path)
    save(tmp_path / "servers", "core", authority.issue(None))
    save(tmp_path / "contexts", "payment", authority.issue(spiffe_id("context", "payment")))
    tls = mutual_tls(tmp_path, "core")
    tls = MutualTls(tmp_path, tls.server_certificate, recheck_seconds=0.0)  # looks at the file every time
    first = tls.channels_of("payment")
    assert tls.channels_of("payment") is first, "unchanged file, same credentials"
    time.sleep(0.01)
    save(tmp_path / "contexts", "payment", authority.issue(spiffe_id("context", "payment")))
    assert tls.channels_of("payment") is not first
