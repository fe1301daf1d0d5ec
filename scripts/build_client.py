"""Builds the ogpgy-client wheel: clients/python with the generated contracts and the .proto files.

The generated code lives once, in gen/; the wheel is assembled from it in a staging directory
(never the server's packages: common, kernel, services, mesh stay out, and so does the network
simulator's contract, which is the outside world's).
Run: .venv/bin/python scripts/build_client.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
GENERATED = ("ogpgy", "og", "buf")  # packages of gen/ the client carries
PROTO_ROOTS = ("ogpgy", "og", "buf", "google", "grpc")  # protos/ the client carries (with the licences)


def stage(into: Path) -> None:
    shutil.copytree(CLIENT, into, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"))
    for package in GENERATED:
        shutil.copytree(ROOT / "gen" / package, into / package, ignore=shutil.ignore_patterns("__pycache__"))
    for root in PROTO_ROOTS:
        shutil.copytree(ROOT / "protos" / root, into / "ogpgy_client" / "protos" / root)


def build(out: Path) -> Path:
    """The wheel's path, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "ogpgy-client"
        stage(staging)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(staging)]
        subprocess.run(command, check=True)
    return max(out.glob("ogpgy_client-*.whl"), key=lambda p: p.stat().st_mtime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the wheel goes (default: dist/)")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()
