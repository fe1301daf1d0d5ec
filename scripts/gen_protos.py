"""Regenerates gen/ from protos/: messages, gRPC stubs and typed .pyi stubs.

One script, so that CI can prove gen/ is exactly what the contracts produce (tests/contract).
Run: .venv/bin/python scripts/gen_protos.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUT = ROOT / "gen"
DESCRIPTOR_SET = "ogpgy/descriptors.binpb"  # in the ogpgy package, so the wheel carries it


# Vendored contracts whose Python code its runtime package already ships (googleapis-common-protos,
# grpcio-health-checking): generating them again would register each file twice.
SHIPPED_IN_PYTHON = ("google/", "grpc/")


def proto_files() -> list[Path]:
    """Every contract to generate, sorted so that output is reproducible."""
    return sorted(p for p in PROTOS.rglob("*.proto") if not p.relative_to(PROTOS).as_posix().startswith(SHIPPED_IN_PYTHON))


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
    write_descriptor_set(out, well_known)


def write_descriptor_set(out: Path, well_known: object) -> None:
    """Every contract's descriptor with its comments (source info) and imports, for server
    reflection: `grpcurl describe` then shows what each RPC and field means."""
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--descriptor_set_out={out / DESCRIPTOR_SET}",
        "--include_source_info",
        "--include_imports",
        *(str(p.relative_to(PROTOS)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed (descriptor set)")
    path = out / DESCRIPTOR_SET
    path.write_bytes(without_json_names(path.read_bytes()))


def without_json_names(serialized: bytes) -> bytes:
    """The set without protoc's json_name on each field, as the generated code's own descriptors
    are: reflection clients (grpcurl) then keep printing the fields' proto names, as before."""
    descriptors = descriptor_pb2.FileDescriptorSet.FromString(serialized)
    for file in descriptors.file:
        strip_json_names(file)
    return descriptors.SerializeToString(deterministic=True)


def strip_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Clears the json_name protoc derives on every field and extension of `file`."""

    def strip(fields: Iterable[descriptor_pb2.FieldDescriptorProto], messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for field in fields:
            field.ClearField("json_name")
        for message in messages:
            strip((*message.field, *message.extension), message.nested_type)

    strip(file.extension, file.message_type)


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
