"""Kubernetes manifests from the mesh configuration (`ogpgy deploy kubernetes`), as a kustomize
base and two overlays.

One configuration, several targets: the process kinds of mesh.toml (which contexts share a
process, how many replicas) become a Deployment and a headless Service each (workloads.py); the
contexts' import declarations become the NetworkPolicies (policies.py); cert-manager bootstraps
the bank's CA and issues every certificate (certificates.py); each process gets its own
PostgreSQL role (database.py) and only the Secrets it reads (secrets.py); the daily runs are
CronJobs (cronjobs.py); kustomize.py lays it out as base/ and overlays/dev, overlays/prod.

Why kustomize and not Helm: the output is plain manifests an operator can read and diff, generated
from the one source that already says what runs where; an overlay adds and patches what differs
per environment without a template language in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mesh.config import MeshConfig
from mesh.kubernetes import kustomize
from mesh.kubernetes.certificates import issuers, operator_certificate, process_certificates
from mesh.kubernetes.cronjobs import scheduled_runs
from mesh.kubernetes.front_door import front_door_objects, nginx_config, routed_processes
from mesh.kubernetes.meta import GRPC_PORT, HEALTH_PORT, METRICS_PORT, Target, documents, service_name
from mesh.kubernetes.policies import callees_of, callers_of, network_policy
from mesh.kubernetes.workloads import cluster_mesh_toml, deployment, disruption_budget, edge_service, service

__all__ = [
    "GRPC_PORT",
    "HEALTH_PORT",
    "METRICS_PORT",
    "Target",
    "callees_of",
    "callers_of",
    "cluster_mesh_toml",
    "render",
    "service_name",
    "write",
]


def _process_files(config: MeshConfig, target: Target, modules: list[type], names: list[str], folder: str) -> dict[str, str]:
    """One file per process of `names`: its Deployment, Service, PodDisruptionBudget, NetworkPolicy
    (and the Service the front door reaches it by, where the door routes to it)."""
    files = {}
    routed = routed_processes(config, modules)
    for spec in (config.process(name) for name in names):
        door = spec.name in routed
        callers, callees = callers_of(config, spec, modules), callees_of(config, spec, modules)
        files[f"{folder}/{spec.name}.yaml"] = documents(
            [
                deployment(spec, target, modules),
                service(spec, target),
                *([edge_service(spec, target)] if door else []),
                disruption_budget(spec, target),
                network_policy(spec, callers, target, callees, front_door=door),
            ]
        )
    return files


def _base(config: MeshConfig, target: Target, modules: list[type]) -> dict[str, str]:
    bank = [spec.name for spec in kustomize.bank_processes(config)]
    files = _process_files(config, target, modules, bank, "base")
    files["base/namespace.yaml"] = documents([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target.namespace}}])
    files["base/certificates.yaml"] = documents(
        [*issuers(target), *process_certificates(config, target, bank), operator_certificate(target)]
    )
    files["base/cronjobs.yaml"] = documents(scheduled_runs(config, target))
    files["base/front-door.yaml"] = documents(front_door_objects(config, target, modules))
    files["base/front-door.conf"] = nginx_config(config, target, modules)
    files["base/mesh.toml"] = cluster_mesh_toml(config, target)
    resources = sorted(path.removeprefix("base/") for path in files if path.endswith(".yaml"))
    files["base/kustomization.yaml"] = kustomize.base_kustomization(target, resources)
    return files


def _dev(config: MeshConfig, target: Target, modules: list[type]) -> dict[str, str]:
    simulators = [spec.name for spec in kustomize.simulators(config)]
    files = _process_files(config, target, modules, simulators, "overlays/dev")
    files["overlays/dev/simulator-certificates.yaml"] = documents(process_certificates(config, target, simulators))
    files["overlays/dev/infrastructure.yaml"] = documents(kustomize.dev_infrastructure(target))
    files["overlays/dev/roles.sql"] = kustomize.dev_roles(config)
    files["overlays/dev/small-pods.yaml"] = kustomize.small_pods()
    resources = sorted(
        path.removeprefix("overlays/dev/") for path in files if path.endswith(".yaml") and not path.endswith("small-pods.yaml")
    )
    files["overlays/dev/kustomization.yaml"] = kustomize.dev_kustomization(config, target, resources)
    return files


def _prod(config: MeshConfig, target: Target) -> dict[str, str]:
    files = {
        "overlays/prod/payment-network-egress.yaml": documents(kustomize.network_egress(config, target)),
        "overlays/prod/roles.sql": kustomize.prod_roles(config),
    }
    files["overlays/prod/kustomization.yaml"] = kustomize.prod_kustomization(config, target, ["payment-network-egress.yaml"])
    return files


def render(config: MeshConfig, target: Target, modules: Iterable[type]) -> dict[str, str]:
    """{relative path: text} of the base and both overlays."""
    modules = list(modules)
    return {**_base(config, target, modules), **_dev(config, target, modules), **_prod(config, target)}


def write(files: dict[str, str], output: Path) -> list[Path]:
    written = []
    for relative, text in sorted(files.items()):
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
