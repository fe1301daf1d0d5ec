"""The bank served on an IPv6 address: `--host ::1` (or "[::1]", as a URL writes it) binds the
gRPC port, the HTTP port and the mail simulator, prints targets and URLs with the address
bracketed, and with TLS presents a certificate naming ::1."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import smtplib
import socket
import ssl
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from common.grpc.tls import channel_credentials
from mesh.embedded import RunningBank, start_embedded
from ogpgy.identity.v1 import identity_service_pb2 as identity_pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as identity_grpc
from tests.conftest import ADMIN_PASSWORD
from tests.processes import BankProcess


def _has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (a container may have IPv6 switched off)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1 cannot be bound)")

ISSUE_TOKEN = "/ogpgy.identity.v1.IdentityService/IssueToken"


async def _grpc_token(target: str, credentials: grpc.ChannelCredentials | None) -> str:
    channel = aio.insecure_channel(target) if credentials is None else aio.secure_channel(target, credentials)
    async with channel:
        answer = await identity_grpc.IdentityServiceStub(channel).IssueToken(
            identity_pb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD), timeout=10
        )
    return answer.access_token


def _http_token(port: int, context: ssl.SSLContext | None) -> tuple[int, dict[str, object]]:
    """IssueToken over the Connect protocol, to ::1 (with TLS, the certificate must name ::1)."""
    connection = (
        http.client.HTTPConnection("::1", port, timeout=10)
        if context is None
        else http.client.HTTPSConnection("::1", port, timeout=10, context=context)
    )
    try:
        body = json.dumps({"username": "admin", "password": ADMIN_PASSWORD})
        connection.request("POST", ISSUE_TOKEN, body, {"content-type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def _smtp_answers(url: str) -> int:
    found = re.fullmatch(r"smtp://\[::1\]:(\d+)", url)
    assert found, url
    with smtplib.SMTP("::1", int(found.group(1)), timeout=10) as smtp:
        return smtp.noop()[0]


async def _assert_served_on_ipv6(bank: RunningBank, ca: bytes | None) -> None:
    assert re.fullmatch(r"\[::1\]:\d+", bank.target), bank.target
    assert await _grpc_token(bank.target, None if ca is None else channel_credentials(ca))
    assert bank.http is not None
    context = None if ca is None else ssl.create_default_context(cadata=ca.decode())
    status, answer = await asyncio.to_thread(_http_token, bank.http.port, context)
    assert status == 200 and answer.get("accessToken"), answer
    assert bank.mail is not None
    assert await asyncio.to_thread(_smtp_answers, bank.mail.url) == 250


@pytest.mark.parametrize("host", ["::1", "[::1]"])
@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
async def test_the_embedded_bank_serves_grpc_http_and_mail_on_ipv6_loopback(tmp_path: Path, host: str, tls: bool) -> None:
    settings = Settings(data_dir=tmp_path, host=host, port=0, http_port=0, tls=tls, admin_password=ADMIN_PASSWORD)
    bank = await start_embedded(settings)
    try:
        await _assert_served_on_ipv6(bank, (tmp_path / "pki" / "ca.pem").read_bytes() if tls else None)
    finally:
        await bank.stop(1)


def _printed(bank: BankProcess, pattern: str) -> re.Match[str]:
    """The first line `ogpgy up` printed that matches `pattern`, reading on past the line that
    said where it serves (the rest of its greeting comes in the same write)."""
    assert bank.proc is not None and bank.proc.stdout is not None
    for line in bank.output:
        if found := re.search(pattern, line):
            return found
    for line in bank.proc.stdout:
        bank.output.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"ogpgy up never printed {pattern}: {bank.log}")


async def test_ogpgy_up_on_ipv6_prints_bracketed_addresses_that_answer(tmp_path: Path) -> None:
    bank = BankProcess(tmp_path, "--host", "::1").start(timeout=60)
    try:
        assert re.fullmatch(r"\[::1\]:\d+", bank.target), bank.log
        assert await _grpc_token(bank.target, None)
        http_url = _printed(bank, r"on http://\[::1\]:(\d+):")
        status, answer = await asyncio.to_thread(_http_token, int(http_url.group(1)), None)
        assert status == 200 and answer.get("accessToken"), answer
        assert "smtp://[::1]:" in bank.log and "smtp://::1:" not in bank.log, bank.log
    finally:
        assert bank.stop() == 0, bank.log
