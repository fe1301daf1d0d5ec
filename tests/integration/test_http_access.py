"""HTTP access to every context: the Connect protocol and gRPC-Web on the bank's second port,
through the same handlers, tokens and errors as gRPC; the public keys at /.well-known/jwks.json.
Called as users would: with curl, and with Connect clients from npm."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import struct
import subprocess
from pathlib import Path

import pytest
from google.protobuf import json_format
from grpc import aio

from common.config import Settings
from mesh.embedded import RunningBank
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.conftest import ADMIN_PASSWORD, onboarding
from tests.processes import BankProcess, run
from tests.typescript import generated_typescript

CONNECT_CLIENT = Path(__file__).parents[1] / "contract" / "node" / "connect_client.ts"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"http_port": 0})


def _url(bank: RunningBank) -> str:
    assert bank.http is not None, "the bank serves no HTTP port"
    return f"http://127.0.0.1:{bank.http.port}"


async def curl(url: str, body: str, *headers: str) -> tuple[int, dict[str, str], dict[str, object]]:
    """POSTs a JSON body as the README shows; the status, the headers and the JSON answer. (curl
    runs in a thread: the bank answers from this test's event loop.)"""
    args = ["curl", "-sS", "--dump-header", "-", "-H", "content-type: application/json", "-d", body, url]
    for header in headers:
        args[1:1] = ["-H", header]
    raw = (await asyncio.to_thread(subprocess.run, args, capture_output=True, timeout=30, check=True)).stdout.decode()
    *blocks, payload = raw.split("\r\n\r\n")  # a "100 Continue" block may come before the answer's
    status_line, *lines = blocks[-1].split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), fields, json.loads(payload or "{}")


async def test_curl_calls_a_context_with_a_token_and_gets_its_errors(bank: RunningBank, admin_token: str) -> None:
    base = f"{_url(bank)}/ogpgy.customer.v1.CustomerService"
    bearer = f"authorization: Bearer {admin_token}"
    onboarded = json_format.MessageToDict(onboarding("http-1"), preserving_proto_field_name=True)  # as a user writes it
    status, _, body = await curl(f"{base}/OnboardCustomer", json.dumps(onboarded), bearer)
    assert status == 200, body
    customer = body["customer"]
    assert isinstance(customer, dict) and customer["kyc"]["status"] == "KYC_STATUS_VERIFIED"
    status, headers, body = await curl(
        f"{base}/GetCustomer", json.dumps({"customer_id": customer["customerId"]}), bearer, "x-request-id: curl-7"
    )
    assert status == 200 and body["customer"] == customer, "proto names in, JSON names out, as Connect does"
    assert headers["x-request-id"] == "curl-7", "the request id is echoed"

    status, _, body = await curl(f"{base}/GetCustomer", '{"customer_id": "42"}', bearer)
    assert (status, body["code"]) == (400, "invalid_argument")
    listed = body["details"]
    assert isinstance(listed, list)
    details = {d["type"]: d["debug"] for d in listed}
    assert details["google.rpc.BadRequest"]["fieldViolations"][0]["field"] == "customer_id"
    assert details["google.rpc.ErrorInfo"]["reason"] == "INVALID_REQUEST"

    status, _, body = await curl(f"{base}/GetCustomer", '{"customer_id": "cus_01NOPE"}', bearer)
    assert (status, body["code"]) == (404, "not_found")
    status, headers, body = await curl(f"{base}/GetCustomer", '{"customer_id": "cus_01NOPE"}')
    assert (status, body["code"]) == (401, "unauthenticated"), "no token, no answer"
    assert headers["x-request-id"], "errors carry a request id too"


async def test_a_refused_http_call_changes_nothing(bank: RunningBank, admin_token: str) -> None:
    """Authorization comes before any side effect over HTTP too: no token, no account."""
    url = f"{_url(bank)}/ogpgy.account.v1.AccountService/Deposit"
    body = '{"request_id": "dep-1", "account_id": "acc_x", "amount": {"currency_code": "EUR", "amount": "5.00"}}'
    assert (await curl(url, body))[0] == 401
    assert (await curl(url, body, "authorization: Bearer forged"))[0] == 401


async def test_public_keys_are_served_at_the_well_known_path(bank: RunningBank, channel: aio.Channel) -> None:
    fetched = await asyncio.to_thread(
        subprocess.run, ["curl", "-sS", f"{_url(bank)}/.well-known/jwks.json"], capture_output=True, check=True
    )
    served = json.loads(fetched.stdout)
    answered = await igrpc.IdentityServiceStub(channel).GetSigningKeys(ipb.GetSigningKeysRequest())
    assert served == json.loads(answered.jwks_json) and served["keys"], "the key set GetSigningKeys answers"


async def test_connect_and_grpc_web_clients_from_npm(bank: RunningBank, admin_token: str, tmp_path: Path) -> None:
    compiled = generated_typescript(tmp_path, CONNECT_CLIENT)
    script = str(compiled / CONNECT_CLIENT.with_suffix(".js").name)
    seen = json.loads(await asyncio.to_thread(run, ["node", script, _url(bank), admin_token], tmp_path))
    expected = {"listed": 0, "error": "InvalidArgument", "fields": ["customer_id"], "reason": "INVALID_REQUEST"}
    assert seen == [{"protocol": "connect", **expected}, {"protocol": "grpc-web", **expected}]


async def test_a_server_stream_over_connect_and_a_caller_who_leaves(bank: RunningBank, channel: aio.Channel) -> None:
    """WatchNotifications, a stream without end, read over the Connect protocol's enveloped JSON;
    the caller then hangs up, and the bank stops as quickly as ever."""
    await cgrpc.CustomerServiceStub(channel).OnboardCustomer(onboarding("http-watch"))  # a welcome message follows
    token = (
        await igrpc.IdentityServiceStub(channel).IssueToken(ipb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD))
    ).access_token

    def first_message() -> dict[str, object]:
        connection = http.client.HTTPConnection("127.0.0.1", bank.http.port if bank.http else 0, timeout=20)
        body = b"{}"
        connection.request(
            "POST",
            "/ogpgy.notification.v1.NotificationService/WatchNotifications",
            struct.pack(">BI", 0, len(body)) + body,
            {"content-type": "application/connect+json", "authorization": f"Bearer {token}"},
        )
        answer = connection.getresponse()
        assert answer.status == 200 and answer.getheader("content-type") == "application/connect+json"
        _flags, size = struct.unpack(">BI", answer.read(5))
        message: dict[str, object] = json.loads(answer.read(size))
        connection.close()  # and leaves, the stream still open
        return message

    seen = await asyncio.to_thread(first_message)
    notification = seen["notification"]
    assert isinstance(notification, dict) and notification["kind"] == "WELCOME", seen


async def test_guessing_over_http_is_throttled_by_the_socket_address(bank: RunningBank) -> None:
    """The address a login failure counts against is the connection's: an X-Forwarded-For header
    changes nothing (else one guesser could pose as many addresses)."""
    url = f"{_url(bank)}/ogpgy.identity.v1.IdentityService/IssueToken"
    for n in range(50):  # as many failures as one address may have, each under another name and "address"
        guess = json.dumps({"username": f"guess-{n}", "password": "wrong"})
        posed = (f"x-forwarded-for: 10.0.0.{n}", f"x-ogpgy-client-address: 10.0.0.{n}")  # a front door's, not a caller's
        assert (await curl(url, guess, *posed))[0] == 401
    status, _, body = await curl(url, json.dumps({"username": "admin", "password": ADMIN_PASSWORD}), "x-forwarded-for: 10.9.9.9")
    assert (status, body["code"]) == (429, "resource_exhausted"), body


def test_https_with_the_banks_ca(tmp_path: Path) -> None:
    """`ogpgy up --tls` serves the HTTP port over TLS too, with a certificate from the bank's CA."""
    bank = BankProcess(tmp_path, "--tls").start()
    try:
        assert bank.proc is not None and bank.proc.stdout is not None
        url = ""
        for _ in range(40):  # the rest of what `up` printed
            found = re.search(r"on (https://127\.0\.0\.1:\d+):", bank.proc.stdout.readline())
            if found:
                url = found.group(1)
                break
        assert url, "up names its HTTPS address"
        keys = subprocess.run(
            ["curl", "-sS", "--cacert", str(tmp_path / "pki" / "ca.pem"), f"{url}/.well-known/jwks.json"],
            capture_output=True,
            check=True,
            timeout=30,
        )
        assert json.loads(keys.stdout)["keys"]
        untrusted = subprocess.run(["curl", "-sS", f"{url}/.well-known/jwks.json"], capture_output=True, timeout=30)
        assert untrusted.returncode == 60, "a client that does not trust the bank's CA is refused"
    finally:
        bank.stop()


async def test_grpc_web_text_mode_is_refused_as_the_readme_says(bank: RunningBank) -> None:
    """gRPC-Web's text mode (base64 bodies) is not served: 415, before anything runs; binary
    gRPC-Web, which every grpc-web client offers, is."""
    envelope = struct.pack(">BI", 0, 0)  # an empty GetSigningKeysRequest, enveloped

    def post(content_type: str, body: bytes) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", int(_url(bank).rsplit(":", 1)[1]), timeout=10)
        connection.request("POST", "/ogpgy.identity.v1.IdentityService/GetSigningKeys", body, {"content-type": content_type})
        status = connection.getresponse().status
        connection.close()
        return status

    assert await asyncio.to_thread(post, "application/grpc-web-text", base64.b64encode(envelope)) == 415
    assert await asyncio.to_thread(post, "application/grpc-web+proto", envelope) == 200
    for grpc_itself in ("application/grpc", "application/grpc+proto", "application/grpc+json", "Application/GRPC; x=1"):
        assert await asyncio.to_thread(post, grpc_itself, envelope) == 415, "gRPC is the gRPC port's, not a 500 here"


async def test_relay_headers_from_a_user_are_refused_over_http_as_over_grpc(bank: RunningBank, admin_token: str) -> None:
    """x-ogpgy-subject and x-ogpgy-via are a context's to send: a user who sends them is refused
    RELAY_NOT_ALLOWED on every transport (they were dropped over HTTP, and the call served)."""
    url = f"{_url(bank)}/ogpgy.identity.v1.IdentityService/ListUsers"
    for relay in ("x-ogpgy-via: payment", f"x-ogpgy-subject: {admin_token}"):
        status, _, body = await curl(url, "{}", f"authorization: Bearer {admin_token}", relay)
        assert (status, body["code"]) == (403, "permission_denied"), body
        listed = body["details"]
        assert (
            isinstance(listed, list)
            and {d["type"]: d["debug"] for d in listed}["google.rpc.ErrorInfo"]["reason"] == "RELAY_NOT_ALLOWED"
        )
