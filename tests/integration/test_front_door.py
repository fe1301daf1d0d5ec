"""The front door of `up --distributed`: one TLS address (nginx, rendered from the mesh
configuration) serving every public service over gRPC, Connect and gRPC-Web, routed by path to the
process that serves it. The README's story passes through it over grpcurl and over curl
(Connect), and the story of the mesh tests through it over gRPC and BankClient; a plaintext caller
or one with another CA's certificate gets nothing; the door's identity reaches no RPC of the
mesh's own, neither through the door nor straight at a context's port."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc import StatusCode
from ogpgy_client import BankClient

from common.grpc.tls import channel_credentials
from common.security.pki import CertificateAuthority, load, save, spiffe_id
from mesh.distributed import Mesh
from mesh.embedded import ALL_MODULES
from mesh.front_door import FrontDoor
from mesh.local_servers import free_port
from mesh.pki import pki_of
from mesh.status import front_door_status
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as idpb
from ogpgy.identity.v1 import identity_service_pb2_grpc as idgrpc
from tests.bank_helpers import fresh_document
from tests.conftest import ADMIN_PASSWORD
from tests.integration.test_mesh_modes import CONTEXTS, the_story
from tests.local_mesh import loopback_mesh

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


@dataclass
class Door:
    mesh: Mesh
    address: str
    ca: Path

    @property
    def pki(self) -> Path:
        return pki_of(self.mesh.config.data_dir)


@pytest.fixture(scope="module")
def door() -> Iterator[Door]:
    mesh = loopback_mesh("ogpgy-door-", replicas={"customer": 2}, front_door=True)
    mesh.start()
    try:
        yield Door(mesh, mesh.config.front_door, pki_of(mesh.config.data_dir) / "ca.pem")
    finally:
        mesh.stop()


def _readme_story() -> str:
    """The README's story, as a user pastes it."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The whole story in six calls", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _through_the_door(story: str, door: Door, prefix: str, caller: str, *, interest: bool) -> str:
    """The story aimed at the door: its address for the embedded bank's, the CA instead of
    plaintext (or curl's Connect call instead of grpcurl), request ids and the passport its own;
    the date's interest run left out when it ran before (a date runs once)."""
    story = story.replace("127.0.0.1:50051", door.address).replace('"story-', f'"{prefix}-story-')
    if not interest:
        story = "\n".join(line for line in story.splitlines() if " interest run " not in line)
    story = story.replace("AB1234564", fresh_document()).replace("scripts/ogpgy", f"{BIN / 'python'} -m mesh.cli")
    defined = next(line for line in story.splitlines() if line.startswith("g() {"))
    return story.replace(defined, caller)


def _run_story(door: Door, caller: str, prefix: str, *, interest: bool) -> str:
    env = {
        **os.environ,
        "OGPGY_TARGET": door.address,
        "OGPGY_CA_FILE": str(door.ca),
        "OGPGY_PASSWORD": ADMIN_PASSWORD,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
    }
    script = "set -euo pipefail\n" + _through_the_door(_readme_story(), door, prefix, caller, interest=interest)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


def _check_told(told: str, *, interest: bool) -> None:
    """What the README says each step prints."""
    lines = told.splitlines()
    assert lines[:2] == ["PAYMENT_STATUS_COMPLETED"] * 2, told
    assert lines[2] == "LOAN_STATUS_DISBURSED SAGA_STATUS_COMPLETED", told
    assert lines[3].startswith("[(1, '221.37', '24.58', '4803.21'), (2,"), told
    assert lines[4] == "24.58 75.42", told
    paid = r"\('1500\.00', '1500\.00', 'Payment from acc_\w+ to acc_\w+'\)"  # the savings' side of an internal payment
    accrued = rf", \('0\.06', '1500\.06', 'interest {_today()}'\)" if interest else ""
    assert re.fullmatch(rf"\[{paid}{accrued}\]", lines[-1]), told
    if interest:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d: INTEREST_RUN_STATUS_COMPLETED, \d+ accounts, .*", lines[5]), told


def test_the_readme_story_over_grpcurl_through_the_front_door(door: Door) -> None:
    grpcurl = (
        f'g() {{ {BIN / "grpcurl"} -cacert "$OGPGY_CA_FILE" -import-path protos'
        + " -proto ogpgy/customer/v1/customer_service.proto"
    )
    grpcurl += " -proto ogpgy/account/v1/account_service.proto -proto ogpgy/payment/v1/payment_service.proto"
    grpcurl += ' -proto ogpgy/lending/v1/lending_service.proto -H "authorization: Bearer $TOKEN" "$@"; }'
    _check_told(_run_story(door, grpcurl, "grpcurl", interest=True), interest=True)


def test_the_readme_story_over_connect_with_curl_through_the_front_door(door: Door) -> None:
    # grpcurl's `-d BODY TARGET METHOD` as one Connect call (JSON over HTTP/1.1)
    curl = (
        'g() { curl -sS --fail-with-body --cacert "$OGPGY_CA_FILE" -H "authorization: Bearer $TOKEN" '
        '-H \'content-type: application/json\' -d "$2" "https://$3/$4"; }'
    )
    _check_told(_run_story(door, curl, "curl", interest=False), interest=False)


async def test_the_mesh_story_and_bank_client_through_the_front_door(door: Door) -> None:
    credentials = channel_credentials(door.ca.read_bytes())  # the bank's CA, no client certificate
    await the_story({context: door.address for context in CONTEXTS}, credentials, interest=False)  # the README's runs it
    async with BankClient(door.address, username="admin", password=ADMIN_PASSWORD, ca_file=door.ca) as bank:
        listed = await bank.customers.ListCustomers(cpb.ListCustomersRequest(page_size=5))
        assert listed.customers, "the customers the story onboarded, through the door"
        again = await bank.customers.GetCustomer(cpb.GetCustomerRequest(customer_id=listed.customers[0].customer_id))
        assert again.customer == listed.customers[0]


def _grpc_web_issue_token(door: Door) -> tuple[int, bytes]:
    """IssueToken over gRPC-Web (binary), framed by hand as a browser's library would."""
    body = idpb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD).SerializeToString()
    request = urllib.request.Request(
        f"https://{door.address}/ogpgy.identity.v1.IdentityService/IssueToken",
        data=struct.pack(">BI", 0, len(body)) + body,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    context = ssl.create_default_context(cafile=str(door.ca))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return answer.status, answer.read()


def test_grpc_web_through_the_front_door(door: Door) -> None:
    status, framed = _grpc_web_issue_token(door)
    assert status == 200
    flag, length = struct.unpack(">BI", framed[:5])
    assert flag == 0
    token = idpb.IssueTokenResponse.FromString(framed[5 : 5 + length]).access_token
    assert token.count(".") == 2
    assert b"grpc-status:0" in framed[5 + length :].replace(b" ", b"")


def _issue_token(address: str, credentials: grpc.ChannelCredentials | None) -> idpb.IssueTokenResponse:
    with grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials) as channel:
        stub = idgrpc.IdentityServiceStub(channel)
        return stub.IssueToken(idpb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD), timeout=5)


def _curl(door: Door, path: str, *args: str, content_type: str = "application/json") -> tuple[int, str, str]:
    """A POST to the door with curl: the HTTP status, the headers and the body."""
    url = f"https://{door.address}{path}"
    command = ["curl", "-sS", "-D", "-", "--cacert", str(door.ca), "-H", f"content-type: {content_type}", *args, url]
    done = subprocess.run(command, capture_output=True, timeout=20)
    head, _, body = done.stdout.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]) if head else 0, head.lower(), body


def test_plaintext_and_another_cas_certificate_get_nothing(door: Door, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as plaintext:
        _issue_token(door.address, None)
    assert plaintext.value.code() == StatusCode.UNAVAILABLE
    foreign = CertificateAuthority.create()
    save(tmp_path, "foreign", foreign.issue(spiffe_id("context", "account")))  # a context's name, from another CA
    with pytest.raises(grpc.RpcError) as stranger:
        _issue_token(door.address, channel_credentials(door.ca.read_bytes(), load(tmp_path, "foreign")))
    assert stranger.value.code() == StatusCode.UNAUTHENTICATED, "refused in gRPC's terms, not INTERNAL"
    assert stranger.value.details() == "the client certificate was not issued by the bank CA"
    certificate = ("--cert", str(tmp_path / "foreign.pem"), "--key", str(tmp_path / "foreign.key"), "-d", "{}")
    status, _, body = _curl(door, "/ogpgy.identity.v1.IdentityService/GetSigningKeys", *certificate)
    assert (status, json.loads(body)["code"]) == (401, "unauthenticated"), "in Connect's terms over HTTP"
    assert _issue_token(door.address, channel_credentials(door.ca.read_bytes())).access_token, "and a caller with none is served"


def test_what_the_door_answers_itself_is_put_in_the_callers_protocol(door: Door, tmp_path: Path) -> None:
    """nginx's own refusals as canonical errors: gRPC statuses, Connect errors, never its HTML."""
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"customer_id": "c" * 5_000_000}))
    path = "/ogpgy.customer.v1.CustomerService/GetCustomer"
    status, _, body = _curl(door, path, "--data-binary", f"@{big}")
    assert (status, json.loads(body)["code"]) == (429, "resource_exhausted"), body[:200]
    status, head, _ = _curl(door, path, "--data-binary", f"@{big}", content_type="application/grpc-web+proto")
    assert status == 200 and "grpc-status: 8" in head
    with grpc.secure_channel(
        door.address, channel_credentials(door.ca.read_bytes()), options=[("grpc.max_send_message_length", 8 << 20)]
    ) as channel:
        stub = cgrpc.CustomerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as too_big:
            stub.GetCustomer(cpb.GetCustomerRequest(customer_id="c" * 5_000_000), timeout=10)
        assert too_big.value.code() == StatusCode.RESOURCE_EXHAUSTED
    status, _, body = _curl(door, "/no.such.Service/Method", "-d", "{}")
    assert (status, json.loads(body)["code"]) == (404, "unimplemented")
    # gRPC's other codecs (application/grpc+json) are the gRPC port's: a canonical answer, not a 500
    framed = tmp_path / "framed"
    framed.write_bytes(struct.pack(">BI", 0, 2) + b"{}")
    grpc_json = ("--http2", "-H", "te: trailers", "--data-binary", f"@{framed}")
    status, head, _ = _curl(
        door, "/ogpgy.identity.v1.IdentityService/GetSigningKeys", *grpc_json, content_type="application/grpc+json"
    )
    assert status == 200 and re.search(r"grpc-status: (\d+)", head) is not None, head


def test_the_doors_identity_reaches_no_rpc_of_the_meshs_own(door: Door) -> None:
    revocations = idpb.GetTokenRevocationsRequest()
    with grpc.secure_channel(door.address, channel_credentials(door.ca.read_bytes())) as channel:
        with pytest.raises(grpc.RpcError) as at_the_door:
            idgrpc.IdentityServiceStub(channel).GetTokenRevocations(revocations, timeout=5)
    assert at_the_door.value.code() == StatusCode.UNIMPLEMENTED
    as_the_door = channel_credentials(door.ca.read_bytes(), load(door.pki / "gateways", "front-door"))
    identity = door.mesh.config.process_of("identity").addresses[0]
    token = _issue_token(door.address, channel_credentials(door.ca.read_bytes())).access_token
    with grpc.secure_channel(identity, as_the_door) as channel:
        stub = idgrpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetTokenRevocations(revocations, metadata=(("authorization", f"Bearer {token}"),), timeout=5)
        assert refused.value.code() == StatusCode.PERMISSION_DENIED, refused.value
        assert "front door does not reach it" in (refused.value.details() or "")
        assert stub.GetSigningKeys(idpb.GetSigningKeysRequest(), timeout=5).jwks_json, "a public RPC it does reach"


def test_status_shows_the_door_serving(door: Door) -> None:
    assert front_door_status(door.mesh.config) == "SERVING"


def _connect_login(door: Door, source: str, username: str, password: str, *headers: str) -> int:
    """IssueToken over Connect (curl) from the loopback address `source`: the HTTP status."""
    url = f"https://{door.address}/ogpgy.identity.v1.IdentityService/IssueToken"
    body = json.dumps({"username": username, "password": password})
    sent = [f"-H{h}" for h in ("content-type: application/json", *headers)]
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--interface", source, "--cacert", str(door.ca)]
    done = subprocess.run([*curl, *sent, "-d", body, url], capture_output=True, text=True, timeout=10)
    return int(done.stdout)


def _grpc_login(door: Door, source: str, password: str, username: str = "admin", *headers: str) -> int:
    """IssueToken over gRPC (curl, HTTP/2, a framed message) from `source`: the grpc-status."""
    message = idpb.IssueTokenRequest(username=username, password=password).SerializeToString()
    curl = ["curl", "-sS", "--http2", "-D", "-", "-o", "/dev/null", "--interface", source, "--cacert", str(door.ca)]
    sent = ["-H", "content-type: application/grpc", "-H", "te: trailers", *(f"-H{h}" for h in headers), "--data-binary", "@-"]
    url = f"https://{door.address}/ogpgy.identity.v1.IdentityService/IssueToken"
    done = subprocess.run(
        [*curl, *sent, url], input=struct.pack(">BI", 0, len(message)) + message, capture_output=True, timeout=10
    )
    found = re.search(rb"grpc-status: ?(\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    return int(found.group(1))


def test_the_door_passes_on_each_callers_address_so_a_stranger_slows_only_their_own(door: Door) -> None:
    """Callers behind the door are told apart by the address the door saw (a stranger's wrong
    passwords must not lock out everyone else who comes through the door)."""
    refused = [_connect_login(door, "127.0.0.2", f"nobody{i}", f"wrong-password-{i}") for i in range(60)]
    assert refused[0] == 401 and refused[-1] == 429, "a stranger over Connect slows their own address"
    over_grpc = [_grpc_login(door, "127.0.0.5", f"wrong-password-{i}", f"nobody{i}") for i in range(60)]
    assert over_grpc[0] == 16 and over_grpc[-1] == 8, "and one over gRPC theirs"
    assert _connect_login(door, "127.0.0.3", "admin", ADMIN_PASSWORD) == 200, "another address is not slowed (Connect)"
    assert _grpc_login(door, "127.0.0.4", ADMIN_PASSWORD) == 0, "nor over gRPC (the door's identity vouches for the address)"
    # a caller cannot pose as another address: the door sets the header over theirs (gRPC and Connect)
    assert _grpc_login(door, "127.0.0.5", ADMIN_PASSWORD, "admin", "x-ogpgy-client-address: 127.0.0.9") == 8
    assert _connect_login(door, "127.0.0.2", "admin", ADMIN_PASSWORD, "x-ogpgy-client-address: 127.0.0.9") == 429


def test_a_processs_connect_port_admits_the_doors_certificate_alone(door: Door) -> None:
    """The Connect port believes the address the door passes on, so it takes no one else: the
    operator's certificate (which a CronJob's pod holds) is closed on after the handshake."""
    connect = door.mesh.config.process("identity").connect[0]

    def get_keys(holder: Path, name: str) -> subprocess.CompletedProcess[str]:
        credentials = ["--cert", str(holder / f"{name}.pem"), "--key", str(holder / f"{name}.key")]
        url = f"https://{connect}/ogpgy.identity.v1.IdentityService/GetSigningKeys"
        command = ["curl", "-sS", "--cacert", str(door.ca), *credentials, "-H", "content-type: application/json", "-d", "{}", url]
        return subprocess.run(command, capture_output=True, text=True, timeout=10)

    as_the_door = get_keys(door.pki / "gateways", "front-door")
    assert as_the_door.returncode == 0 and "jwksJson" in as_the_door.stdout, as_the_door.stderr
    as_the_operator = get_keys(door.pki / "clients", "operator")
    assert as_the_operator.returncode != 0 and "jwksJson" not in as_the_operator.stdout


def _login_behind_a_proxy(address: str, ca: Path, claimed: str, password: str) -> int:
    """IssueToken over Connect through a TCP proxy's PROXY protocol header naming `claimed` as the
    caller (as a Gateway passing TLS through sends it): the HTTP status."""
    host, port = address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    raw.sendall(f"PROXY TCP4 {claimed} {host} 40000 {port}\r\n".encode())
    context = ssl.create_default_context(cafile=str(ca))
    with context.wrap_socket(raw, server_hostname=host) as tls:
        body = json.dumps({"username": "admin", "password": password}).encode()
        head = f"POST /ogpgy.identity.v1.IdentityService/IssueToken HTTP/1.1\r\nHost: {host}\r\n"
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        tls.sendall(head.encode() + body)
        return int(tls.recv(64).split()[1])


def test_behind_a_tcp_proxy_the_door_takes_the_callers_address_from_the_proxy_protocol(door: Door) -> None:
    """A Gateway passing TLS through (or a load balancer) is every caller's address to the door;
    with front_door_proxied_from, the address the proxy names in the PROXY protocol is the caller's,
    and only the stranger's is slowed. (A second door, with that setting, on the same mesh.)"""
    config = replace(door.mesh.config, front_door=f"127.0.0.1:{free_port()}", front_door_proxied_from="127.0.0.0/8")
    config = replace(config, data_dir=door.mesh.config.data_dir / "proxied")
    proxied = FrontDoor(config, ALL_MODULES, door.pki)
    proxied.start()
    try:
        refused = [_login_behind_a_proxy(config.front_door, door.ca, "198.51.100.7", f"wrong-{i}") for i in range(55)]
        assert refused[0] == 401 and refused[-1] == 429, "the stranger the proxy names is slowed"
        assert _login_behind_a_proxy(config.front_door, door.ca, "198.51.100.8", ADMIN_PASSWORD) == 200, "another caller is not"
    finally:
        proxied.stop()
