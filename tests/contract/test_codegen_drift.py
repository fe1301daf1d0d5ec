"""gen/ is exactly what scripts/gen_protos.py makes from protos/: never edited by hand, never stale."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_the_contracts(tmp_path: Path) -> None:
    fresh = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(fresh)], check=True, timeout=120)
    committed, regenerated = _tree(ROOT / "gen"), _tree(fresh)
    assert sorted(committed) == sorted(regenerated), "files differ: run scripts/gen_protos.py"
    stale = [name for name in committed if not filecmp.cmp(committed[name], regenerated[name], shallow=False)]
    assert not stale, f"gen/ is out of date for {stale}: run .venv/bin/python scripts/gen_protos.py"


def test_the_api_reference_is_the_contracts_comments(tmp_path: Path) -> None:
    fresh = tmp_path / "api.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_api_docs.py"), "--out", str(fresh)], check=True, timeout=120)
    assert fresh.read_text() == (ROOT / "docs" / "api.md").read_text(), "docs/api.md is stale: run scripts/gen_api_docs.py"
    assert "Opens an account for a VERIFIED customer" in fresh.read_text(), "the RPCs' comments are in it"
