"""What the container image installs is the wheel (Containerfile): every module and every file the
code reads at run time (migrations, templates, product and rule files, data) must be in it, and
`ogpgy` its entry point. Built here, offline, without the image (containers do not run on CI)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "kernel", "services", "mesh")


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files", *PACKAGES, "gen"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if not name.endswith(".pyi") or name.startswith("gen/")]


def test_the_wheel_holds_every_module_and_runtime_file_and_the_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp_path), "."],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    [wheel] = list(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        inside = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in inside if n.endswith("entry_points.txt"))
    expected = {name.removeprefix("gen/") for name in _tracked()}
    missing = sorted(name for name in expected if name not in inside)
    assert not missing, f"not in the wheel (pyproject.toml package-data?): {missing}"
    assert "ogpgy = mesh.cli:main" in entry_points
