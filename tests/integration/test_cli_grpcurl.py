"""`ogpgy up` as a user runs it (a subprocess), explored with the real grpcurl binary."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.processes import ADMIN_PASSWORD, BIN, BankProcess

ROOT = Path(__file__).resolve().parents[2]
ONBOARD = {
    "request_id": "cli-1",
    "given_name": "Grace",
    "family_name": "Hopper",
    "email": "grace@example.com",
    "date_of_birth": {"year": 1986, "month": 12, "day": 9},
    "document": {"type": "DOCUMENT_TYPE_PASSPORT", "number": "AB1234564", "issuing_country_code": "US"},
    "address": {"lines": ["1 Navy Way"], "city": "Arlington", "postal_code": "22202", "country_code": "US"},
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[BankProcess]:
    """`ogpgy up` on a free port, as a user starts it."""
    bank = BankProcess(tmp_path / "var").start()
    yield bank
    if bank.proc is not None and bank.proc.poll() is None:
        bank.stop()


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=30)


def test_grpcurl_walkthrough(served: BankProcess) -> None:
    target = served.target
    listed = grpcurl(target, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {"ogpgy.customer.v1.CustomerService", "grpc.health.v1.Health"}

    described = grpcurl(target, "describe", "ogpgy.customer.v1.CustomerService")
    assert "rpc OnboardCustomer ( .ogpgy.customer.v1.OnboardCustomerRequest )" in described.stdout
    assert "Registers a customer and runs KYC" in described.stdout, "reflection serves the contracts' comments"
    method = grpcurl(target, "describe", "ogpgy.customer.v1.CustomerService.OnboardCustomer")
    assert "Registers a customer and runs KYC" in method.stdout, "a method's comment too"

    unauthenticated = grpcurl("-d", json.dumps(ONBOARD), target, "ogpgy.customer.v1.CustomerService/OnboardCustomer")
    assert unauthenticated.returncode != 0 and "Unauthenticated" in unauthenticated.stderr
    token = subprocess.run(
        [str(BIN / "ogpgy"), "token", "--target", target],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD},
    )
    assert token.returncode == 0, token.stderr
    auth = ("-H", f"authorization: Bearer {token.stdout.strip()}")
    onboarded = grpcurl(*auth, "-d", json.dumps(ONBOARD), target, "ogpgy.customer.v1.CustomerService/OnboardCustomer")
    assert onboarded.returncode == 0, onboarded.stderr
    customer = json.loads(onboarded.stdout)["customer"]
    assert customer["kyc"]["status"] == "KYC_STATUS_VERIFIED"

    get = json.dumps({"customer_id": customer["customer_id"]})
    fetched = grpcurl(*auth, "-d", get, target, "ogpgy.customer.v1.CustomerService/GetCustomer")
    assert fetched.returncode == 0 and "Grace" in fetched.stdout

    invalid = grpcurl(
        *auth,
        "-d",
        json.dumps({**ONBOARD, "request_id": "cli-2", "email": "nope"}),
        target,
        "ogpgy.customer.v1.CustomerService/OnboardCustomer",
    )
    assert invalid.returncode != 0
    assert "InvalidArgument" in invalid.stderr and '"field":"email"' in invalid.stderr.replace(" ", "")

    health = grpcurl("-d", '{"service":"ogpgy.customer.v1.CustomerService"}', target, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout) == {"status": "SERVING"}

    reconciled = subprocess.run(
        [str(BIN / "ogpgy"), "reconcile", "--target", target],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD},
    )
    assert reconciled.returncode == 0, reconciled.stderr
    assert "network settled 0, booked to clearing 0, matched 0, still completing 0, discrepancies 0" in reconciled.stdout

    today = datetime.now(UTC).date().isoformat()
    collect = [str(BIN / "ogpgy"), "loans", "collect", "--date", today, "--target", target]
    env = {**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD}
    collected = subprocess.run(collect, capture_output=True, text=True, timeout=60, env=env)
    assert collected.returncode == 0, collected.stderr
    assert f"{today}: COLLECTION_RUN_STATUS_COMPLETED, 0 loans, 0.00 EUR collected" in collected.stdout
    again = subprocess.run(collect, capture_output=True, text=True, timeout=60, env=env)
    assert "has already completed" in again.stderr and "COMPLETED" not in again.stdout, "a date is collected once"
    assert again.returncode == 0, "and a rerun (a CronJob's retry) is no failure: there is nothing left to do"


def test_sigterm_shuts_down_gracefully(served: BankProcess) -> None:
    assert served.stop() == 0
    assert "SIGTERM received: shutting down" in served.log


def test_help_is_useful() -> None:
    result = subprocess.run([str(BIN / "ogpgy"), "up", "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for option in ("--port", "--data-dir", "--host", "50051"):
        assert option in result.stdout


def test_readme_commands_are_the_ones_that_work() -> None:
    top = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "scripts/ogpgy up" in top and "scripts/test" in top
    assert os.access(ROOT / "scripts" / "ogpgy", os.X_OK) and os.access(ROOT / "scripts" / "test", os.X_OK)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec scripts/test")


def test_the_printed_token_hint_works_as_printed(tmp_path: Path) -> None:
    """`ogpgy up --data-dir D` prints how to get a token; that very command must work (it once
    left out --data-dir and failed)."""
    data = tmp_path / "elsewhere"
    proc = subprocess.Popen(
        [str(BIN / "ogpgy"), "up", "--port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        hint = next(line for line in proc.stdout if "TOKEN=$(" in line)
        command = hint.strip().removeprefix("TOKEN=$(").removesuffix(")").replace("scripts/ogpgy", str(BIN / "ogpgy"), 1)
        token = subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=15)
