"""Every RPC of every context fuzzed with hypothesis: random and malformed messages, hostile
strings, extreme numbers, missing fields, raw bytes, and no/garbage/foreign tokens. The bank
(a real `ogpgy up` process) must never answer INTERNAL, UNKNOWN or time out, and its ledger must
still balance afterwards (nothing half-written).

Examples per RPC: OGPGY_FUZZ_EXAMPLES (CI: 25; the long profile: 500, e.g.
`OGPGY_FUZZ_EXAMPLES=500 scripts/test tests/fuzz`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.di import context_spec
from common.grpc.services import services_of_servicer
from common.security.context import ADMIN, SecurityContext
from common.security.tokens import TokenSettings, issue
from mesh.embedded import BUSINESS_MODULES
from tests.conftest import ADMIN_PASSWORD
from tests.fuzz.strategies import payloads
from tests.ledger_checks import ledger_checks
from tests.processes import BankProcess

EXAMPLES = int(os.environ.get("OGPGY_FUZZ_EXAMPLES", "25"))
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
# The bank's contexts; the VelocityPay simulator stands for the outside world and is not fuzzed.
RPCS = [
    (binding.full_name, method)
    for module in BUSINESS_MODULES
    for exported in context_spec(module).exports
    for binding in services_of_servicer(exported)
    for method in binding.descriptor.methods
]


class Fuzzed:
    def __init__(self, process: BankProcess, data_dir: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.channel = grpc.insecure_channel(process.target)
        self.tokens: list[str] = []


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    process = BankProcess(data_dir).start()
    bank = Fuzzed(process, data_dir)
    from ogpgy.identity.v1 import identity_service_pb2 as ipb
    from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc

    admin = (
        igrpc.IdentityServiceStub(bank.channel)
        .IssueToken(ipb.IssueTokenRequest(username="admin", password=ADMIN_PASSWORD))
        .access_token
    )
    foreign, _ = issue(
        Ed25519PrivateKey.generate(), TokenSettings("ogpgy-bank", "ogpgy-identity"), SecurityContext("usr_x", "mallory", (ADMIN,))
    )
    bank.tokens = [admin, admin, admin, "", "garbage", foreign]  # mostly admin, so validation is reached
    yield bank
    bank.channel.close()
    process.stop()


def _call(bank: Fuzzed, full_service: str, method: object, payload: bytes, token: str) -> grpc.StatusCode:
    path = f"/{full_service}/{method.name}"
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    open_ended = method.name.startswith("Watch")  # streams what comes until the caller leaves
    try:
        if method.server_streaming:
            for _ in bank.channel.unary_stream(path)(payload, metadata=metadata, timeout=0.5 if open_ended else 10):
                pass
        else:
            bank.channel.unary_unary(path)(payload, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        if open_ended and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK  # accepted and still watching when the caller left
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("service", "method"), RPCS, ids=[f"{s.rsplit('.', 1)[-1]}.{m.name}" for s, m in RPCS])
def test_no_input_makes_an_rpc_fail_internally(fuzzed: Fuzzed, service: str, method: object) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(payload=payloads(method.input_type), token=st.sampled_from(fuzzed.tokens))
    def one(payload: bytes, token: str) -> None:
        code = _call(fuzzed, service, method, payload, token)
        assert code not in NEVER, f"{service}/{method.name} answered {code.name}"

    one()


def test_the_ledger_still_balances_after_the_fuzzing(fuzzed: Fuzzed) -> None:
    """Runs after every fuzz test of the module (pytest keeps file order)."""
    with sqlite3.connect(fuzzed.data_dir / "account.db") as db:
        broken = {name: rows for name, sql in ledger_checks().items() if (rows := db.execute(sql).fetchall())}
    assert not broken, broken
