"""The rendered Kubernetes files, read as the tests of tests/unit/test_kubernetes_*.py need them."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mesh.config import DEFAULT_CONFIG, MeshConfig, load_mesh_config
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.kubernetes import Target, render

ROOT = Path(__file__).resolve().parents[2]
# API groups whose kinds kubernetes_validate knows (the built-in ones); the rest come from CRDs.
BUILT_IN = {"v1", "apps", "batch", "policy", "networking.k8s.io"}


@functools.cache
def mesh_config() -> MeshConfig:
    return load_mesh_config(DEFAULT_CONFIG, environ={}, known_contexts=CONTEXT_NAMES)


@functools.cache
def _rendered() -> tuple[tuple[str, str], ...]:
    return tuple(render(mesh_config(), Target(), ALL_MODULES).items())


def rendered() -> dict[str, str]:
    return dict(_rendered())


def documents(files: dict[str, str], *names: str) -> list[dict[str, Any]]:
    return [doc for name in names for doc in yaml.safe_load_all(files[name]) if doc]


def every_object(files: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, object) of every Kubernetes object of the base and the overlays (not kustomizations, not patches)."""
    for name in sorted(files):
        if name.endswith(".yaml") and not name.endswith(("kustomization.yaml", "small-pods.yaml")):
            for doc in documents(files, name):
                yield name, doc


def workloads(files: dict[str, str]) -> list[dict[str, Any]]:
    """The Deployments of the bank's processes (base) and of dev's simulator."""
    return [
        d
        for _, d in every_object(files)
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "context-process"
    ]


def validate_custom_resources(objects: list[dict[str, Any]]) -> list[list[str] | None]:
    """Each object checked against its CRD's schema by scripts/validate-crds.mjs (the
    @kubernetes-models packages of package.json): None when valid, else the reasons."""
    done = subprocess.run(
        ["node", str(ROOT / "scripts" / "validate-crds.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode in (0, 1), f"validate-crds.mjs: {done.returncode} {done.stdout} {done.stderr}"
    answer: list[list[str] | None] = json.loads(done.stdout)
    return answer
