"""Vendors the third-party contracts ours import or answer with, so protos/ builds offline alone.

A Node, Go or Java user of the bank needs google/rpc (rich errors), the gRPC health contract
and buf.validate (the rules in our contracts); none of them is reachable from every machine, so
they live in protos/, each beside its licence, taken from the package this project already
installs: google/rpc's files as published by googleapis-common-protos; health and validate from
the descriptors grpcio-health-checking and protovalidate carry (they ship no .proto), printed
back as .proto source and proved equal by compiling them again.

Run: .venv/bin/python scripts/vendor_protos.py [--check]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from gen_protos import strip_json_names  # a script beside this one
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_encoding, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BUF = ROOT / "node_modules" / ".bin" / "buf"  # scripts/bootstrap installs it
HEADER = "// Vendored from the {dist} {version} package ({licence}, see {licence_file}); regenerate with\n// scripts/vendor_protos.py, never edit by hand.\n"


@dataclass(frozen=True)
class Vendored:
    path: str  # where the file lives under protos/
    dist: str  # the Python distribution it comes from
    licence: str

    @property
    def licence_file(self) -> str:
        return f"{Path(self.path).parts[0]}/LICENSE"


GOOGLE_RPC = [
    Vendored(f"google/rpc/{name}.proto", "googleapis-common-protos", "Apache-2.0") for name in ("status", "error_details", "code")
]
HEALTH = Vendored("grpc/health/v1/health.proto", "grpcio-health-checking", "Apache-2.0")
VALIDATE = Vendored("buf/validate/validate.proto", "protovalidate", "Apache-2.0")


def header(item: Vendored) -> str:
    return HEADER.format(
        dist=item.dist, version=metadata.version(item.dist), licence=item.licence, licence_file=item.licence_file
    )


def licence_text(dist: str) -> str:
    files = metadata.files(dist) or []
    found = next(f for f in files if Path(str(f)).name.upper().startswith("LICENSE"))
    return Path(str(found.locate())).read_text()


def copied_google_rpc(item: Vendored) -> str:
    source = resources.files("google.rpc") / Path(item.path).name
    return header(item) + "\n" + source.read_text()


def health_descriptor() -> descriptor_pb2.FileDescriptorProto:
    from grpc_health.v1 import health_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = HEALTH.path  # the canonical name; Python's package files it under grpc_health/
    return proto


def validate_descriptor() -> descriptor_pb2.FileDescriptorProto:
    from protovalidate._gen.buf.validate import validate_pb

    return descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary())


class Printer:
    """Prints a FileDescriptorProto as .proto source (proto2 or proto3, no maps, no editions):
    enough for the two contracts vendored this way, and checked by compiling the result again."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.file = file
        self.proto3 = file.syntax == "proto3"
        self.options = _OptionReader(file)
        self.lines: list[str] = []
        self.maps = dict(_map_entries(f".{file.package}", file.message_type))

    def render(self) -> str:
        f = self.file
        self.emit(0, f'syntax = "{f.syntax or "proto2"}";', "", f"package {f.package};", "")
        if f.dependency:
            self.emit(0, *(f'import "{d}";' for d in f.dependency), "")
        self.emit(0, *(f"option {o};" for o in self.options.of(f.options)), "")
        for enum in f.enum_type:
            self.enum(0, enum)
        for message in f.message_type:
            self.message(0, message)
        self.extensions(0, f.extension)
        for service in f.service:
            self.service(service)
        return "\n".join(self.lines).rstrip() + "\n"

    def emit(self, depth: int, *lines: str) -> None:
        self.lines.extend(("  " * depth + line) if line else "" for line in lines)

    def message(self, depth: int, m: descriptor_pb2.DescriptorProto) -> None:
        self.emit(depth, f"message {m.name} {{")
        self.emit(depth + 1, *(f"option {o};" for o in self.options.of(m.options)))
        for enum in m.enum_type:
            self.enum(depth + 1, enum)
        for nested in m.nested_type:
            if not nested.options.map_entry:
                self.message(depth + 1, nested)
        real_oneofs = {i for i, _ in enumerate(m.oneof_decl)} - {f.oneof_index for f in m.field if f.proto3_optional}
        printed: set[int] = set()
        for field in m.field:  # in declaration order: a oneof's block where its first field was
            index = field.oneof_index if field.HasField("oneof_index") else None
            if index is None or index not in real_oneofs:
                self.emit(depth + 1, self.field(field))
            elif index not in printed:
                printed.add(index)
                self.oneof(depth + 1, m, index)
        for r in m.extension_range:
            self.emit(depth + 1, f"extensions {r.start} to {'max' if r.end == 536870912 else r.end - 1};")
        for r in m.reserved_range:
            self.emit(depth + 1, f"reserved {r.start}{'' if r.end == r.start + 1 else f' to {r.end - 1}'};")
        if m.reserved_name:
            self.emit(depth + 1, "reserved " + ", ".join(f'"{n}"' for n in m.reserved_name) + ";")
        self.extensions(depth + 1, m.extension)
        self.emit(depth, "}", "")

    def oneof(self, depth: int, m: descriptor_pb2.DescriptorProto, index: int) -> None:
        self.emit(depth, f"oneof {m.oneof_decl[index].name} {{")
        self.emit(depth + 1, *(f"option {o};" for o in self.options.of(m.oneof_decl[index].options)))
        members = (f for f in m.field if f.HasField("oneof_index") and f.oneof_index == index)
        self.emit(depth + 1, *(self.field(f, in_oneof=True) for f in members))
        self.emit(depth, "}")

    def field(self, f: descriptor_pb2.FieldDescriptorProto, in_oneof: bool = False) -> str:
        label = ""
        if f.label == f.LABEL_REPEATED:
            label = "repeated "
        elif f.label == f.LABEL_REQUIRED:
            label = "required "
        elif not in_oneof and (f.proto3_optional or not self.proto3):
            label = "optional "
        kind = self.kind(f)
        entry = self.maps.get(f.type_name)
        if entry is not None:
            label, kind = "", f"map<{self.kind(entry.field[0])}, {self.kind(entry.field[1])}>"
        options = list(self.options.of(f.options))
        if f.HasField("default_value"):
            options.insert(0, f"default = {_default_literal(f)}")
        if f.HasField("json_name") and f.json_name != _camel(f.name) and not f.extendee:
            options.append(f'json_name = "{f.json_name}"')
        suffix = f" [{', '.join(options)}]" if options else ""
        return f"{label}{kind} {f.name} = {f.number}{suffix};"

    @staticmethod
    def kind(f: descriptor_pb2.FieldDescriptorProto) -> str:
        return f.type_name or descriptor_pb2.FieldDescriptorProto.Type.Name(f.type)[5:].lower()

    def enum(self, depth: int, e: descriptor_pb2.EnumDescriptorProto) -> None:
        self.emit(depth, f"enum {e.name} {{")
        self.emit(depth + 1, *(f"option {o};" for o in self.options.of(e.options)))
        for v in e.value:
            options = list(self.options.of(v.options))
            self.emit(depth + 1, f"{v.name} = {v.number}" + (f" [{', '.join(options)}]" if options else "") + ";")
        for r in e.reserved_range:  # inclusive ends, unlike a message's
            self.emit(depth + 1, f"reserved {r.start}{'' if r.end == r.start else f' to {r.end}'};")
        if e.reserved_name:
            self.emit(depth + 1, "reserved " + ", ".join(f'"{n}"' for n in e.reserved_name) + ";")
        self.emit(depth, "}", "")

    def extensions(self, depth: int, fields: Iterable[descriptor_pb2.FieldDescriptorProto]) -> None:
        by_extendee: dict[str, list[descriptor_pb2.FieldDescriptorProto]] = {}
        for f in fields:
            by_extendee.setdefault(f.extendee, []).append(f)
        for extendee, group in by_extendee.items():
            self.emit(depth, f"extend {extendee} {{")
            self.emit(depth + 1, *(self.field(f) for f in group))
            self.emit(depth, "}", "")

    def service(self, s: descriptor_pb2.ServiceDescriptorProto) -> None:
        self.emit(0, f"service {s.name} {{")
        for m in s.method:
            request = ("stream " if m.client_streaming else "") + m.input_type
            response = ("stream " if m.server_streaming else "") + m.output_type
            self.emit(1, f"rpc {m.name}({request}) returns ({response});")
        self.emit(0, "}")


def _map_entries(
    scope: str, messages: Iterable[descriptor_pb2.DescriptorProto]
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    """The synthetic entry messages of map fields, by full name: printed as map<K, V>."""
    for m in messages:
        for nested in m.nested_type:
            if nested.options.map_entry:
                yield f"{scope}.{m.name}.{nested.name}", nested
        yield from _map_entries(f"{scope}.{m.name}", m.nested_type)


class _OptionReader:
    """Reads options, extensions included, through a pool that knows the file's own extensions
    (validate.proto's rule fields carry options of the extensions it defines)."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for dependency in dict.fromkeys(["google/protobuf/descriptor.proto", *file.dependency]):
            proto = descriptor_pb2.FileDescriptorProto()
            importlib.import_module(dependency.removesuffix(".proto").replace("/", ".") + "_pb2").DESCRIPTOR.CopyToProto(proto)
            self.pool.Add(proto)
        self.pool.Add(file)

    def of(self, options: Message) -> Iterator[str]:
        typed = self._reparse(options)
        for field, value in typed.ListFields():
            name = f"({field.full_name})" if field.is_extension else field.name
            values = value if field.is_repeated else [value]
            for item in values:
                yield f"{name} = {_literal(field, item)}"

    def _reparse(self, options: Message) -> Message:
        descriptor = self.pool.FindMessageTypeByName(options.DESCRIPTOR.full_name)
        typed = message_factory.GetMessageClass(descriptor)()
        typed.ParseFromString(options.SerializeToString())
        return typed


def _literal(field: FieldDescriptor, value: object) -> str:
    if isinstance(value, Message):
        return "{" + text_format.MessageToString(value, as_one_line=True, as_utf8=True) + "}"
    if field.enum_type is not None and isinstance(value, int):
        return field.enum_type.values_by_number[value].name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + text_encoding.CEscape(value, as_utf8=True) + '"'
    return str(value)


def _default_literal(f: descriptor_pb2.FieldDescriptorProto) -> str:
    if f.type in (f.TYPE_STRING, f.TYPE_BYTES):
        return f'"{f.default_value}"'
    return f.default_value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def rendered() -> dict[str, str]:
    """Every vendored file's text, and each licence, by path under protos/."""
    files = {item.path: copied_google_rpc(item) for item in GOOGLE_RPC}
    files[HEALTH.path] = buf_format(header(HEALTH) + "\n" + Printer(health_descriptor()).render())
    files[VALIDATE.path] = buf_format(header(VALIDATE) + "\n" + Printer(validate_descriptor()).render())
    for item in (*GOOGLE_RPC, HEALTH, VALIDATE):
        files[item.licence_file] = licence_text(item.dist)
    return files


def buf_format(source: str) -> str:
    """The printed source laid out as buf lays out ours (rule expressions one per line)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "printed.proto"
        path.write_text(source)
        result = subprocess.run([str(BUF), "format", str(path)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"buf format failed: {result.stderr}")
        return result.stdout


def compiled(path: str, root: Path) -> descriptor_pb2.FileDescriptorProto:
    """`path` compiled by protoc from `root`, for comparing a printed file with its source."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        well_known = resources.files("grpc_tools") / "_proto"
        if protoc.main(["protoc", f"-I{root}", f"-I{well_known}", f"--descriptor_set_out={out}", path]) != 0:
            sys.exit(f"protoc failed on {path}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def same_contract(printed: descriptor_pb2.FileDescriptorProto, source: descriptor_pb2.FileDescriptorProto) -> bool:
    """Equal up to what printing does not carry: the source info, and the json names protoc derives."""
    copies = []
    for proto in (printed, source):
        copy = descriptor_pb2.FileDescriptorProto()
        copy.CopyFrom(proto)
        copy.ClearField("source_code_info")
        strip_json_names(copy)
        copies.append(copy.SerializeToString(deterministic=True))
    return copies[0] == copies[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if protos/ differs from what would be written")
    args = parser.parse_args()
    files = rendered()
    stale = [path for path, text in files.items() if not (PROTOS / path).exists() or (PROTOS / path).read_text() != text]
    if args.check:
        if stale:
            sys.exit("vendored protos are stale: " + ", ".join(stale) + " (run scripts/vendor_protos.py)")
        return
    for path in stale:
        (PROTOS / path).parent.mkdir(parents=True, exist_ok=True)
        (PROTOS / path).write_text(files[path])
    for item, source in ((HEALTH, health_descriptor()), (VALIDATE, validate_descriptor())):
        if not same_contract(compiled(item.path, PROTOS), source):
            sys.exit(f"{item.path}: the printed file compiles to another contract than its source")
    print(f"vendored {len(files)} files under {PROTOS.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
