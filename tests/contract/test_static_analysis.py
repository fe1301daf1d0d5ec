"""Static analysis as part of the tests: ruff (format and lint) over the repository and mypy over
common/, services/ and mesh/ (strict on common/), with the configuration in pyproject.toml.

Each checker is also shown to catch its kind of finding in a scratch tree with the same
configuration, so a configuration that silently checks nothing fails here too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECKED = ("common", "kernel", "services", "mesh", "clients/python/ogpgy_client")
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
_WHY = re.compile(r"^\[[a-z-]+(, *[a-z-]+)*\]  # \S")


def _run(args: list[str], cwd: Path, *, mypy_cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(BIN), "MYPYPATH": str(cwd / "gen"), "HOME": str(cwd)}
    if mypy_cache is not None:
        args = [*args, "--cache-dir", str(mypy_cache)]
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def _assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_the_code_is_formatted_by_ruff() -> None:
    _assert_clean(_run(["ruff", "format", "--check", "--no-cache", "."], ROOT))


def test_ruff_lint_finds_nothing() -> None:
    _assert_clean(_run(["ruff", "check", "--no-cache", "."], ROOT))


def test_mypy_finds_nothing_in_common_services_and_mesh() -> None:
    _assert_clean(_run(["mypy"], ROOT))


def test_every_type_ignore_names_its_error_code_and_says_why() -> None:
    unexplained = []
    for package in CHECKED:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found = _IGNORE.search(line)
                if found and not _WHY.match(found["rest"]):
                    unexplained.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not unexplained, "a type: ignore needs [its-code]  # and why:\n" + "\n".join(unexplained)


def test_no_code_opts_out_of_the_formatter() -> None:
    skipped = [
        str(path.relative_to(ROOT))
        for folder in (*CHECKED, "tests", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != Path(__file__).resolve() and re.search(r"#\s*fmt:\s*(skip|off)", path.read_text(encoding="utf-8"))
    ]
    assert not skipped, skipped


def _scratch(tmp_path: Path, files: dict[str, str]) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "gen").mkdir()
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in CHECKED:
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


_LINT_FINDINGS = {
    "B006": "def f(items: list[int] = []) -> list[int]:\n    return items\n",
    "I001": "import sys\nimport os\n\nprint(os, sys)\n",
    "UP035": "from typing import Dict\n\nx: Dict[str, int] = {}\n",
    "ASYNC251": "import time\n\n\nasync def f() -> None:\n    time.sleep(1)\n",
    "RUF006": "import asyncio\n\n\nasync def g() -> None: ...\n\n\nasync def f() -> None:\n    asyncio.create_task(g())\n",
    "BLE001": "def f() -> None:\n    try:\n        pass\n    except Exception:\n        pass\n",
}


def test_the_lint_configuration_catches_each_family(tmp_path: Path) -> None:
    tree = _scratch(tmp_path, {f"services/{code.lower()}.py": text for code, text in _LINT_FINDINGS.items()})
    result = _run(["ruff", "check", "--no-cache", "--output-format", "concise", "."], tree)
    assert result.returncode == 1
    for code in _LINT_FINDINGS:
        assert f"{code} " in result.stdout, f"{code} not reported:\n{result.stdout}"


def test_the_formatter_check_catches_unformatted_code(tmp_path: Path) -> None:
    tree = _scratch(tmp_path, {"mesh/ugly.py": "x = {  'a':1 }\n"})
    result = _run(["ruff", "format", "--check", "--no-cache", "."], tree)
    assert result.returncode == 1 and "mesh/ugly.py" in result.stdout


def test_mypy_is_strict_on_common_and_checks_services_and_mesh(tmp_path: Path) -> None:
    tree = _scratch(
        tmp_path,
        {
            "common/untyped.py": "def f(x):\n    return x\n",
            "common/loose.py": "from typing import Any\n\n\ndef f(x: Any) -> int:\n    return x\n",
            "services/wrong.py": "def f() -> int:\n    return 'one'\n",
            "mesh/dead.py": "def f(x: int) -> int:\n    if isinstance(x, int):\n        return 1\n    return 2\n",
            "mesh/ignored.py": "x: int = 'a'  # type: ignore\n",
        },
    )
    result = _run(["mypy"], tree, mypy_cache=tmp_path / ".mypy_cache")
    assert result.returncode == 1
    expected = {
        "common/untyped.py": "[no-untyped-def]",
        "common/loose.py": "[no-any-return]",  # strict on common/ only
        "services/wrong.py": "[return-value]",
        "mesh/dead.py": "[unreachable]",
        "mesh/ignored.py": "[ignore-without-code]",
    }
    for path, code in expected.items():
        assert any(line.startswith(path) and code in line for line in result.stdout.splitlines()), (
            f"{path} {code}:\n{result.stdout}"
        )
