"""Boundaries checked statically: import contracts (import-linter) and the protobuf contracts (buf)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
_CONTRACTS = (ROOT / ".importlinter").read_text().count("[importlinter:contract:")
# The contexts the rooms' layers contract names: each must exist with its required rooms.
_LAYERED = ("account", "customer", "identity", "interest", "lending", "notification", "payment")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lint-imports"), str(ROOT / ".importlinter"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": str(BIN)},
        timeout=120,
    )


def test_import_contracts_hold_for_the_code_base() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{_CONTRACTS} kept, 0 broken" in result.stdout


def test_import_contracts_catch_each_kind_of_violation(tmp_path: Path) -> None:
    files = {
        "common/__init__.py": "",
        "common/helpers.py": "import services.alpha.service\n",
        "kernel/__init__.py": "",
        "kernel/convert.py": "import mesh\n",
        "kernel/accounts.py": "",
        "kernel/customers.py": "",
        "common/grpc/__init__.py": "",
        "common/db/__init__.py": "",
        "mesh/__init__.py": "",
        "services/__init__.py": "",
        "services/alpha/__init__.py": "",
        "services/alpha/service.py": "import services.beta.service\n",
        "services/alpha/ports.py": "import grpc\n",
        "services/alpha/domain.py": "import grpc\nimport sqlite3\n",
        "services/alpha/repository.py": "",
        "services/alpha/api.py": "",
        "services/alpha/module.py": "",
        "services/beta/__init__.py": "",
        "services/beta/service.py": "",
        "services/beta/domain.py": "",
    }
    for context in _LAYERED:
        files |= {f"services/{context}/{room}.py": "" for room in ("__init__", "module", "domain")}
    files["services/payment/repository.py"] = "import services.payment.api\n"  # a room importing one above it
    files["services/payment/api.py"] = ""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"0 kept, {_CONTRACTS} broken" in result.stdout, result.stdout
    assert "services.alpha.service -> services.beta.service" in result.stdout
    assert "services.alpha.domain -> grpc" in result.stdout
    assert "services.alpha.ports -> grpc" in result.stdout
    assert "kernel.convert -> mesh" in result.stdout
    assert "services.payment.repository -> services.payment.api" in result.stdout


def _buf() -> str:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        pytest.fail("buf is missing: run scripts/bootstrap (it installs @bufbuild/buf from npm)")
    return str(buf)


def test_buf_lint_standard_passes() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_rejects_a_nonstandard_contract(tmp_path: Path) -> None:
    (tmp_path / "protos" / "bad" / "v1").mkdir(parents=True)
    (tmp_path / "protos" / "bad" / "v1" / "bad.proto").write_text(
        'syntax = "proto3";\npackage bad.v1;\nservice Things { rpc Get(Thing) returns (Thing); }\nmessage Thing { string ID = 1; }\n'
    )
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    result = subprocess.run([_buf(), "lint"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "SERVICE_SUFFIX" in result.stdout or 'should be suffixed with "Service"' in result.stdout, result.stdout


def test_no_breaking_change_against_the_committed_baseline() -> None:
    """contracts/baseline.binpb is the released contract (scripts/contracts-baseline); a break needs
    a new package version instead."""
    result = subprocess.run(
        [_buf(), "breaking", "--against", "contracts/baseline.binpb"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_removed_field(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    account = tmp_path / "protos" / "ogpgy" / "account" / "v1" / "account_service.proto"
    text = account.read_text()
    limit = re.search(r"\n  int32 limit = 6 \[.*?\];\n", text, re.S)
    assert limit is not None
    account.write_text(text.replace(limit.group(0), "\n"))
    result = subprocess.run(
        [_buf(), "breaking", "--against", str(ROOT / "contracts" / "baseline.binpb")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "limit" in result.stdout and "deleted" in result.stdout, result.stdout
