"""The mesh configuration: plaintext between processes is allowed on loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.config import MeshConfigError, ProcessSpec, load_mesh_config, mesh_toml


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
