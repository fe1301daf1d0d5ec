"""Regenerates gen/ from protos/: messages, gRPC stubs and typed .pyi stubs.

One script, so that CI can prove gen/ is exactly what the contracts produce (tests/contract).
Run: .venv/bin/python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "gen"


def proto_files() -> list[Path]:
    """Every contract, sorted so that output is reproducible."""
    return sorted(PROTOS.rglob("*.proto"))


def plugin(name: str) -> str:
    """Path of a protoc plugin installed beside this interpreter (mypy-protobuf)."""
    scripts = Path(sysconfig.get_path("scripts"))
    found = shutil.which(name, path=str(scripts)) or shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return found


def generate(out: Path) -> None:
    """Writes the generated tree into `out`, replacing what was there."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        "--mypy_opt=quiet",
        "--mypy_grpc_opt=quiet",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTOS)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    add_package_markers(out)


def add_package_markers(out: Path) -> None:
    """Makes every generated directory a regular package (importable as ogpgy.<context>.v1)."""
    for directory in sorted(p for p in out.rglob("*") if p.is_dir()):
        (directory / "__init__.py").touch()
        (directory / "py.typed").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="target directory (default: gen/)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
