"""The mesh configuration: which contexts share a process, and where each process listens.

A TOML file (mesh.toml at the repository root is the default: one process per context on
loopback, two replicas of the customer context):

    [mesh]
    data_dir = "var/mesh"   # signing key, admin password, local Redis and PostgreSQL data
    redis = "local"         # "local": started for you; or redis://host:port/db
    postgres = "local"      # "local": a cluster under data_dir, started for you; or a DSN
    mutual_tls = true       # false (loopback only, for comparisons): plaintext, every process holds the signing key
    front_door = "127.0.0.1:7100"   # optional: one TLS address for every public service (nginx, started for you)
    front_door_proxied_from = "10.0.0.0/8"   # optional: a TCP proxy there says who callers are (PROXY protocol)

    [process.core]          # contexts named together share a process: their calls are colocated
    contexts = ["account", "payment"]
    addresses = ["127.0.0.1:7102", "127.0.0.1:7112"]   # one per replica
    metrics = ["127.0.0.1:9102", "127.0.0.1:9112"]     # optional: each replica's Prometheus /metrics
    connect = ["127.0.0.1:8102", "127.0.0.1:8112"]     # optional: each replica's Connect/gRPC-Web port (mutual TLS)

Where a name, not a list of addresses, reaches the replicas (Kubernetes, a load balancer), a
process says where each replica listens and how the others reach it instead:

    [process.account]
    replicas = 3
    listen = "0.0.0.0:7103"                                       # every replica, in its own pod
    target = "dns:///account.ogpgy.svc.cluster.local:7103"        # resolved; round robin over all
    metrics_port = 9103                                           # optional, on every replica
    connect_port = 8103                                           # optional: Connect/gRPC-Web, mutual TLS
    health_port = 7180                                            # optional: gRPC health alone, plaintext (probes)

Environment overrides, for deployments that keep one file for every host: OGPGY_DATA_DIR,
OGPGY_REDIS_URL, OGPGY_POSTGRES_DSN, OGPGY_SMTP_URL, OGPGY_<PROCESS>_ADDRESSES (comma-separated), and
OGPGY_<PROCESS>_TARGET for a process given by `target`.
OGPGY_BASE_PORT moves every port of `addresses`, `metrics`, `connect` and `front_door` at once, each keeping its distance
from the file's `base_port` (7100 unless [mesh] says otherwise): two meshes on one machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LOCAL = "local"
EXTERNAL = "external"  # given by the environment (OGPGY_REDIS_URL, OGPGY_POSTGRES_DSN, OGPGY_SMTP_URL)
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "mesh.toml"


class MeshConfigError(ValueError):
    """The mesh configuration is wrong; the message says where and how to fix it."""


@dataclass(frozen=True)
class ProcessSpec:
    """A kind of process: the contexts it serves, and one listening address per replica."""

    name: str
    contexts: tuple[str, ...]
    addresses: tuple[str, ...]  # one per replica, each listened on and dialled; () with `target`
    metrics: tuple[str, ...] = ()  # host:port of each replica's /metrics, when it serves them
    listen: str = ""  # with `target`: where every replica listens
    target: str = ""  # how other processes reach the replicas (a name that resolves to all of them)
    replicas: int = 0  # with `target`: how many
    metrics_port: int = 0  # with `target`: each replica's /metrics port (0: none)
    health_port: int = 0  # with `target`: each replica's plaintext port serving gRPC health alone, for probes (0: none)
    connect: tuple[str, ...] = ()  # host:port of each replica's Connect and gRPC-Web port, when it serves one
    connect_port: int = 0  # with `target`: each replica's Connect port (0: none)

    @property
    def replica_count(self) -> int:
        return self.replicas if self.target else len(self.addresses)

    def listen_address(self, replica: int) -> str:
        return self.listen if self.target else self.addresses[replica]

    def connect_address(self, replica: int) -> str:
        """Where replica `replica` serves Connect and gRPC-Web ("" for none): the front door's upstream."""
        if self.target:
            return f"{self.listen.rsplit(':', 1)[0]}:{self.connect_port}" if self.connect_port else ""
        return self.connect[replica] if self.connect else ""

    def reached_at(self) -> str:
        """The gRPC target that reaches every replica."""
        return self.target or target_of(self.addresses)


@dataclass(frozen=True)
class MeshConfig:
    data_dir: Path
    redis: str
    postgres: str
    processes: tuple[ProcessSpec, ...]
    mutual_tls: bool = True
    smtp: str = LOCAL  # the mail server (smtp://host:port), or the simulator the launcher starts
    front_door: str = ""  # host:port of the one TLS address for every public service ("" for none)
    front_door_proxied_from: str = ""  # the CIDR of a TCP proxy in front of the door that speaks the PROXY protocol

    def process(self, name: str) -> ProcessSpec:
        for spec in self.processes:
            if spec.name == name:
                return spec
        raise MeshConfigError(f"no process '{name}' in the mesh configuration (processes: {', '.join(self.process_names())})")

    def process_names(self) -> list[str]:
        return [p.name for p in self.processes]

    def process_of(self, context: str) -> ProcessSpec:
        for spec in self.processes:
            if context in spec.contexts:
                return spec
        raise MeshConfigError(f"context '{context}' is in no process of the mesh configuration")

    def target(self, context: str) -> str:
        """The gRPC target that reaches every replica of `context`'s process."""
        return self.process_of(context).reached_at()

    def targets(self) -> dict[str, str]:
        return {context: p.reached_at() for p in self.processes for context in p.contexts}


def target_of(addresses: tuple[str, ...]) -> str:
    """One address as is; several as an ipv4:/ipv6: list, which round_robin balances over."""
    if len(addresses) == 1:
        return addresses[0]
    hosts = [a.rsplit(":", 1)[0].strip("[]") for a in addresses]
    try:
        versions = {ipaddress.ip_address(h).version for h in hosts}
    except ValueError:
        raise MeshConfigError(
            f"replicas {', '.join(addresses)}: give IP addresses, or one DNS name that resolves to every replica"
        ) from None
    if len(versions) != 1:
        raise MeshConfigError(f"replicas {', '.join(addresses)} mix IPv4 and IPv6")
    return f"ipv{versions.pop()}:{','.join(addresses)}"


def mesh_toml(
    data_dir: Path,
    redis: str,
    postgres: str,
    processes: list[ProcessSpec],
    *,
    mutual_tls: bool = True,
    smtp: str = LOCAL,
    front_door: str = "",
) -> str:
    """The text of a mesh configuration, in the format load_mesh_config reads."""

    def listed(values: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    plaintext = "" if mutual_tls else "mutual_tls = false\n"
    door = f'front_door = "{front_door}"\n' if front_door else ""
    lines = [f'[mesh]\ndata_dir = "{data_dir}"\nredis = "{redis}"\npostgres = "{postgres}"\nsmtp = "{smtp}"\n{plaintext}{door}']
    for spec in processes:
        lines.append(f"[process.{spec.name}]\ncontexts = {listed(spec.contexts)}\naddresses = {listed(spec.addresses)}")
        if spec.metrics:
            lines.append(f"metrics = {listed(spec.metrics)}")
        if spec.connect:
            lines.append(f"connect = {listed(spec.connect)}")
        lines.append("")
    return "\n".join(lines)


def load_mesh_config(
    path: Path = DEFAULT_CONFIG, environ: Mapping[str, str] = os.environ, known_contexts: tuple[str, ...] = ()
) -> MeshConfig:
    """Reads and checks the file, then applies the environment overrides."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MeshConfigError(f"{path}: no such mesh configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MeshConfigError(f"{path}: {exc}") from None
    mesh = raw.get("mesh", {})
    base = path.parent
    data_dir = Path(environ.get("OGPGY_DATA_DIR") or mesh.get("data_dir", "var/mesh"))
    shift = _port_shift(path, mesh, environ)
    processes = tuple(_process(path, name, body, environ, shift) for name, body in raw.get("process", {}).items())
    config = MeshConfig(
        data_dir=data_dir if data_dir.is_absolute() else base / data_dir,
        redis=environ.get("OGPGY_REDIS_URL") or str(mesh.get("redis", LOCAL)),
        postgres=environ.get("OGPGY_POSTGRES_DSN") or str(mesh.get("postgres", LOCAL)),
        processes=processes,
        mutual_tls=bool(mesh.get("mutual_tls", True)),
        smtp=environ.get("OGPGY_SMTP_URL") or str(mesh.get("smtp", LOCAL)),
        front_door=_front_door(path, mesh, shift),
        front_door_proxied_from=_cidr(path, mesh.get("front_door_proxied_from", "")),
    )
    _check(path, config, known_contexts)
    return config


DEFAULT_BASE_PORT = 7100


def _port_shift(path: Path, mesh: Mapping[str, object], environ: Mapping[str, str]) -> int:
    """How far OGPGY_BASE_PORT moves the file's ports (0 when it is not set)."""
    base = mesh.get("base_port", DEFAULT_BASE_PORT)
    wanted = environ.get("OGPGY_BASE_PORT", "")
    if not isinstance(base, int) or isinstance(base, bool) or not 0 < base < 65536:
        raise MeshConfigError(f"{path}: [mesh] base_port must be a port number")
    if not wanted:
        return 0
    if not wanted.isdigit() or not 0 < int(wanted) < 65536:
        raise MeshConfigError(f"OGPGY_BASE_PORT must be a port number, not {wanted!r}")
    return int(wanted) - base


def _front_door(path: Path, mesh: Mapping[str, object], shift: int) -> str:
    door = mesh.get("front_door", "")
    if not isinstance(door, str) or (door and ":" not in door):
        raise MeshConfigError(f"{path}: [mesh] front_door must be host:port (127.0.0.1:7100), where the front door listens")
    return _shifted(path, door, shift) if door else ""


def _cidr(path: Path, value: object) -> str:
    try:
        return str(ipaddress.ip_network(str(value))) if value else ""
    except ValueError:
        raise MeshConfigError(f"{path}: [mesh] front_door_proxied_from must be a CIDR (10.0.0.0/8), not {value!r}") from None


def _shifted(path: Path, address: str, shift: int) -> str:
    host, _, port = address.strip().rpartition(":")
    moved = int(port) + shift if port.isdigit() else -1
    if not 0 < moved < 65536:
        raise MeshConfigError(f"{path}: OGPGY_BASE_PORT moves {address.strip()} out of the port range")
    return f"{host}:{moved}"


def _process(path: Path, name: str, body: Mapping[str, object], environ: Mapping[str, str], shift: int = 0) -> ProcessSpec:
    contexts = body.get("contexts", [name])
    if not isinstance(contexts, list) or not contexts or not all(isinstance(c, str) for c in contexts):
        raise MeshConfigError(f"{path}: [process.{name}] contexts must be a non-empty list of context names")
    if "target" in body:
        elsewhere = environ.get(f"OGPGY_{name.upper().replace('-', '_')}_TARGET")  # e.g. the payment network, per cluster
        return _named_process(path, name, tuple(contexts), {**body, "target": elsewhere} if elsewhere else body)
    override = environ.get(f"OGPGY_{name.upper().replace('-', '_')}_ADDRESSES")
    addresses = override.split(",") if override else body.get("addresses", [])
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) and ":" in a for a in addresses):
        raise MeshConfigError(
            f"{path}: [process.{name}] addresses must be a non-empty list of host:port, one per replica "
            "(or give target, listen and replicas)"
        )
    metrics, connect = (_per_replica(path, name, body, key, len(addresses)) for key in ("metrics", "connect"))
    if override:  # addresses given for this host are taken as they are
        return ProcessSpec(name, tuple(contexts), tuple(a.strip() for a in addresses), metrics, connect=connect)
    moved = tuple(_shifted(path, a, shift) for a in addresses)
    return ProcessSpec(
        name,
        tuple(contexts),
        moved,
        tuple(_shifted(path, m, shift) for m in metrics),
        connect=tuple(_shifted(path, c, shift) for c in connect),
    )


def _per_replica(path: Path, name: str, body: Mapping[str, object], key: str, replicas: int) -> tuple[str, ...]:
    """An optional list of one host:port per replica (metrics, connect)."""
    values = body.get(key, [])
    if not isinstance(values, list) or (values and len(values) != replicas) or not all(isinstance(v, str) for v in values):
        raise MeshConfigError(f"{path}: [process.{name}] {key} must list one host:port per replica, like addresses")
    return tuple(v.strip() for v in values)


def _named_process(path: Path, name: str, contexts: tuple[str, ...], body: Mapping[str, object]) -> ProcessSpec:
    """A process reached by a name (`target`), each replica listening on `listen`."""
    target, listen, replicas = body.get("target"), body.get("listen"), body.get("replicas", 1)
    metrics_port, health_port, connect_port = (
        _port(path, name, body, key) for key in ("metrics_port", "health_port", "connect_port")
    )
    if not isinstance(target, str) or ":" not in target:
        raise MeshConfigError(f"{path}: [process.{name}] target must be a gRPC target with a port, e.g. dns:///account:7103")
    if not isinstance(listen, str) or ":" not in listen:
        raise MeshConfigError(f"{path}: [process.{name}] listen must be host:port (0.0.0.0:7103), where each replica listens")
    if not isinstance(replicas, int) or replicas < 1:
        raise MeshConfigError(f"{path}: [process.{name}] replicas must be a whole number, at least 1")
    if "addresses" in body:
        raise MeshConfigError(f"{path}: [process.{name}] give addresses, or target with listen and replicas, not both")
    return ProcessSpec(
        name,
        contexts,
        (),
        listen=listen,
        target=target,
        replicas=replicas,
        metrics_port=metrics_port,
        health_port=health_port,
        connect_port=connect_port,
    )


def _port(path: Path, name: str, body: Mapping[str, object], key: str) -> int:
    """An optional port of every replica (0: none)."""
    port = body.get(key, 0)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
        raise MeshConfigError(f"{path}: [process.{name}] {key} must be a port number")
    return port


def _check_plaintext(path: Path, config: MeshConfig) -> None:
    """Plaintext between processes only where nobody else listens: tokens would cross in clear."""
    hosts = {
        address.rsplit(":", 1)[0].strip("[]")
        for spec in config.processes
        for address in (*spec.addresses, *([spec.listen] if spec.listen else []))
    }
    beyond = sorted(h for h in hosts if h not in ("127.0.0.1", "localhost", "::1") and not h.startswith("127."))
    if not config.mutual_tls and beyond:
        raise MeshConfigError(
            f"{path}: mutual_tls = false is for a mesh on loopback only, but processes listen on {', '.join(beyond)}; "
            "remove the line (mutual TLS is the default)"
        )
    if not config.mutual_tls and config.front_door:
        raise MeshConfigError(
            f"{path}: the front door speaks mutual TLS to the processes, which mutual_tls = false turns off: "
            "remove front_door (or the mutual_tls line)"
        )


def _check(path: Path, config: MeshConfig, known_contexts: tuple[str, ...]) -> None:
    _check_plaintext(path, config)
    placed = [c for p in config.processes for c in p.contexts]
    doubled = sorted({c for c in placed if placed.count(c) > 1})
    if doubled:
        raise MeshConfigError(f"{path}: {', '.join(doubled)} placed in more than one process; name each context once")
    if known_contexts:
        unknown = sorted(set(placed) - set(known_contexts))
        missing = sorted(set(known_contexts) - set(placed))
        if unknown:
            raise MeshConfigError(f"{path}: unknown context(s) {', '.join(unknown)} (known: {', '.join(known_contexts)})")
        if missing:
            raise MeshConfigError(f"{path}: context(s) {', '.join(missing)} are in no process; add them to one")
    addresses = [a for p in config.processes for a in (*p.addresses, *p.metrics, *p.connect)]
    addresses += [config.front_door] if config.front_door else []
    shared = sorted({a for a in addresses if addresses.count(a) > 1})
    if shared:
        raise MeshConfigError(f"{path}: address(es) {', '.join(shared)} used twice; each replica listens on its own")
    for spec in config.processes:
        spec.reached_at()  # replicas must be balanceable


def _running_record() -> Path:
    """Where `up --distributed` notes the configuration it runs, for this user of the machine."""
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(folder) / f"ogpgy-mesh-{os.getuid()}.json"


def remember_running(config: Path) -> None:
    """Notes that this process runs the mesh of `config` (ogpgy status then finds it)."""
    _running_record().write_text(json.dumps({"config": str(config.resolve()), "pid": os.getpid()}), encoding="utf-8")


def forget_running() -> None:
    record = _running_record()
    try:
        if json.loads(record.read_text(encoding="utf-8")).get("pid") == os.getpid():
            record.unlink()
    except (OSError, ValueError):
        pass


def running_config(environ: Mapping[str, str] = os.environ) -> Path:
    """The mesh configuration a client command means: OGPGY_MESH_CONFIG, else the one a running
    `up --distributed` of this user noted, else the shipped mesh.toml."""
    if environ.get("OGPGY_MESH_CONFIG"):
        return Path(environ["OGPGY_MESH_CONFIG"])
    try:
        noted = json.loads(_running_record().read_text(encoding="utf-8"))
        os.kill(int(noted["pid"]), 0)  # still running (signal 0 checks, sends nothing)
        return Path(noted["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CONFIG
