"""ogpgy-client as a user gets it: the wheel scripts/build_client.py makes, installed into a clean
virtualenv (its dependencies by their ranges), with no server code, runs the README story."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.processes import ADMIN_PASSWORD, BankProcess, run

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "clients" / "python" / "examples" / "story.py"


def test_the_client_package_runs_the_story_from_a_clean_virtualenv(tmp_path: Path) -> None:
    wheel = run([sys.executable, str(ROOT / "scripts" / "build_client.py"), "--out", str(tmp_path / "dist")], ROOT).strip()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], tmp_path)

    found = json.loads(
        run(
            [
                python,
                "-c",
                "import importlib.util as u, json; "
                "print(json.dumps({m: u.find_spec(m) is not None for m in "
                "['ogpgy_client', 'ogpgy.customer.v1.customer_service_pb2', 'buf.validate.validate_pb2', "
                "'common', 'services', 'mesh', 'kernel', 'velocitypay']}))",
            ],
            tmp_path,  # not the repository: what the virtualenv itself holds
            PYTHONPATH="",
        )
    )
    assert found == {
        "ogpgy_client": True,
        "ogpgy.customer.v1.customer_service_pb2": True,
        "buf.validate.validate_pb2": True,
        "common": False,
        "services": False,
        "mesh": False,
        "kernel": False,
        "velocitypay": False,
    }, "the contracts and the client, no server code"
    shipped = run([python, "-c", "import ogpgy_client, pathlib; print(pathlib.Path(ogpgy_client.__file__).parent)"], tmp_path)
    assert str(venv) in shipped, "installed in the virtualenv"
    shipped = shipped.strip()
    assert (Path(shipped) / "protos" / "ogpgy" / "account" / "v1" / "account_service.proto").exists()
    assert (Path(shipped) / "protos" / "buf" / "LICENSE").exists()

    bank = BankProcess(tmp_path / "bank").start()
    try:
        told = json.loads(run([python, str(STORY), bank.target], tmp_path, OGPGY_PASSWORD=ADMIN_PASSWORD, PYTHONPATH=""))
    finally:
        bank.stop()
    assert told == {
        "kyc": "KYC_STATUS_VERIFIED",
        "payment": "PAYMENT_STATUS_COMPLETED",
        "loan": "LOAN_STATUS_DISBURSED",
        "repaid_interest": "24.58",
        "checking_balance": "5400.00",
        "refused": {"code": "INVALID_ARGUMENT", "reason": "INVALID_REQUEST", "fields": ["customer_id"]},
    }
