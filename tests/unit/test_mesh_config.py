"""The mesh configuration: plaintext between processes is allowed on loopback only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mesh.config import (
    DEFAULT_CONFIG,
    MeshConfigError,
    ProcessSpec,
    forget_running,
    load_mesh_config,
    mesh_toml,
    remember_running,
    running_config,
)


def _config(tmp_path: Path, address: str, *, mutual_tls: bool) -> Path:
    path = tmp_path / "mesh.toml"
    processes = [ProcessSpec("account", ("account",), (address,))]
    path.write_text(mesh_toml(tmp_path / "data", "redis://x:6379/0", "postgresql://x/db", processes, mutual_tls=mutual_tls))
    return path


def test_mutual_tls_is_the_default_and_plaintext_stays_on_loopback(tmp_path: Path) -> None:
    assert load_mesh_config(_config(tmp_path, "10.0.0.5:7000", mutual_tls=True), environ={}).mutual_tls
    assert not load_mesh_config(_config(tmp_path, "127.0.0.1:7000", mutual_tls=False), environ={}).mutual_tls
    with pytest.raises(
        MeshConfigError, match=r"mutual_tls = false is for a mesh on loopback only, but processes listen on 10\.0\.0\.5"
    ):
        load_mesh_config(_config(tmp_path, "10.0.0.5:7000", mutual_tls=False), environ={})


def test_one_setting_moves_every_port_of_the_mesh() -> None:
    """OGPGY_BASE_PORT: a second mesh on the same machine, each port at its distance from the base."""
    shipped = load_mesh_config(DEFAULT_CONFIG, environ={})
    moved = load_mesh_config(DEFAULT_CONFIG, environ={"OGPGY_BASE_PORT": "17100"})
    for before, after in zip(shipped.processes, moved.processes, strict=True):
        old, new = (*before.addresses, *before.metrics, *before.connect), (*after.addresses, *after.metrics, *after.connect)
        pairs = list(zip(old, new, strict=True))
        assert pairs and all(int(n.rsplit(":", 1)[1]) - int(o.rsplit(":", 1)[1]) == 10_000 for o, n in pairs)
    assert moved.process("identity").addresses == ("127.0.0.1:17101",)
    assert moved.process("identity").connect == ("127.0.0.1:18101",)
    assert (shipped.front_door, moved.front_door) == ("127.0.0.1:7100", "127.0.0.1:17100"), "the front door moves too"
    for wrong in ("seven", "0", "65000"):  # 65000 moves 9101 beyond the port range
        with pytest.raises(MeshConfigError, match="OGPGY_BASE_PORT"):
            load_mesh_config(DEFAULT_CONFIG, environ={"OGPGY_BASE_PORT": wrong})


def test_status_finds_the_mesh_a_running_up_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("OGPGY_MESH_CONFIG", raising=False)
    assert running_config() == DEFAULT_CONFIG, "nothing running: the shipped mesh"
    mine = tmp_path / "two-hosts.toml"
    mine.write_text("")
    remember_running(mine)
    assert running_config() == mine.resolve()
    assert running_config({"OGPGY_MESH_CONFIG": "/etc/ogpgy/mesh.toml"}) == Path("/etc/ogpgy/mesh.toml"), "the variable wins"
    forget_running()
    assert running_config() == DEFAULT_CONFIG
    dead = next(tmp_path.glob("ogpgy-mesh-*.json"), None)
    assert dead is None, "forgotten when the mesh stops"
    (tmp_path / f"ogpgy-mesh-{os.getuid()}.json").write_text(json.dumps({"config": str(mine), "pid": 2**22 + 1}))
    assert running_config() == DEFAULT_CONFIG, "a mesh whose launcher is gone is not running"


def test_a_front_door_needs_the_mesh_s_mutual_tls(tmp_path: Path) -> None:
    """The door speaks mutual TLS to the processes: a plaintext mesh with a door is refused, not
    started without it in silence."""
    text = DEFAULT_CONFIG.read_text().replace("[mesh]\n", "[mesh]\nmutual_tls = false\n", 1)
    (tmp_path / "mesh.toml").write_text(text)
    with pytest.raises(MeshConfigError, match="front door speaks mutual TLS"):
        load_mesh_config(tmp_path / "mesh.toml", environ={})
