"""A distributed mesh on loopback for the tests and the scripts: one process per context (or the
grouping given), free ports, its own data directory; local Redis and PostgreSQL unless given."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from mesh.config import ProcessSpec, load_mesh_config, mesh_toml
from mesh.distributed import Mesh
from mesh.embedded import CONTEXT_NAMES
from mesh.local_servers import free_port
from tests.bank_helpers import generous_fraud_rules
from tests.conftest import ADMIN_PASSWORD


def mesh_root(prefix: str = "ogpgy-mesh-") -> Path:
    """A data directory PostgreSQL can use when the tests run as root (it runs as nobody then)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def write_mesh(
    root: Path,
    processes: list[ProcessSpec],
    *,
    redis: str = "local",
    postgres: str = "local",
    mutual_tls: bool = True,
    smtp: str = "local",
    front_door: str = "",
) -> Path:
    path = root / "mesh.toml"
    path.write_text(mesh_toml(root / "data", redis, postgres, processes, mutual_tls=mutual_tls, smtp=smtp, front_door=front_door))
    return path


def loopback_processes(
    replicas: Mapping[str, int] | None = None, *, metrics: bool = False, connect: bool = False
) -> list[ProcessSpec]:
    """One process per context on free loopback ports, `replicas` of some (with a metrics port
    and a Connect port each, when asked)."""

    def ports(count: int, wanted: bool = True) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{free_port()}" for _ in range(count)) if wanted else ()

    specs = []
    for context in CONTEXT_NAMES:
        count = (replicas or {}).get(context, 1)
        specs.append(ProcessSpec(context, (context,), ports(count), ports(count, metrics), connect=ports(count, connect)))
    return specs


def loopback_mesh(
    prefix: str,
    *,
    replicas: Mapping[str, int] | None = None,
    metrics: bool = False,
    postgres: str = "local",
    log_level: str = "INFO",
    mutual_tls: bool = True,
    front_door: bool = False,
) -> Mesh:
    """A Mesh (not started) over loopback_processes, with fraud limits a load does not hit; with
    `front_door`, every process serves a Connect port too and the door listens on a free port."""
    root = mesh_root(prefix)
    processes = loopback_processes(replicas, metrics=metrics, connect=front_door)
    door = f"127.0.0.1:{free_port()}" if front_door else ""
    path = write_mesh(root, processes, postgres=postgres, mutual_tls=mutual_tls, front_door=door)
    return Mesh(
        path,
        load_mesh_config(path, known_contexts=CONTEXT_NAMES),
        admin_password=ADMIN_PASSWORD,
        log_level=log_level,
        extra_env={"OGPGY_FRAUD_RULES": str(generous_fraud_rules(root))},
    )
