"""A process kind of mesh.toml as a Deployment, a headless Service and a PodDisruptionBudget.

The pods run the bank's one image as its user on a read-only root, with gRPC probes on the
plaintext health-only port (the kubelet's probes carry no certificate), the certificates
cert-manager fills, and only the Secrets their contexts read (secrets.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.di import context_spec
from mesh.config import MeshConfig, ProcessSpec
from mesh.kubernetes.meta import (
    CONFIG_DIR,
    CONNECT_PORT,
    DATA_DIR,
    GRPC_PORT,
    HEALTH_PORT,
    MESH_CONFIG,
    METRICS_PORT,
    PAYMENT_NETWORK,
    PKI_DIR,
    SIMULATOR,
    UID,
    Target,
    described,
    metadata,
    restricted_container_security,
    selector,
    service_host,
    service_name,
)
from mesh.kubernetes.secrets import SecretFile, secrets_of

MESH_FILE = f"{CONFIG_DIR}/mesh/mesh.toml"


def cluster_mesh_toml(config: MeshConfig, target: Target) -> str:
    """The mesh configuration every pod reads: each process listens on the pod's port and is
    reached through its headless Service's name (every ready pod's address). The payment network
    is reached where the ConfigMap `ogpgy-payment-network` says (OGPGY_VELOCITYPAY_TARGET): dev's
    simulator in the namespace, prod's real network outside."""
    lines = [
        "# Rendered by `ogpgy deploy kubernetes` from the mesh configuration; the URLs come from the Secrets.",
        "[mesh]",
        f'data_dir = "{DATA_DIR}"',
        'redis = "external"',
        'postgres = "external"',
        'smtp = "external"',
        "",
    ]
    for spec in config.processes:
        lines += [
            f"[process.{spec.name}]",
            "contexts = [" + ", ".join(f'"{c}"' for c in spec.contexts) + "]",
            f"replicas = {spec.replica_count}",
            f'listen = "0.0.0.0:{GRPC_PORT}"',
            f'target = "dns:///{service_host(spec.name, target)}:{GRPC_PORT}"',
            f"metrics_port = {METRICS_PORT}",
            f"health_port = {HEALTH_PORT}",
            *([f"connect_port = {CONNECT_PORT}"] if spec.name != SIMULATOR else []),
            "",
        ]
    return "\n".join(lines)


def _secret_env(secret: SecretFile) -> dict[str, Any]:
    return {"name": secret.variable, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}


def _volume_name(secret: SecretFile) -> str:
    return secret.name.removeprefix("ogpgy-")


def calls_the_network(spec: ProcessSpec, modules: Iterable[type]) -> bool:
    """Whether a context of `spec` imports the payment network's services (payment does)."""
    served = (context_spec(m) for m in modules if context_spec(m).name in spec.contexts)
    return any(i.from_context == SIMULATOR for context in served for i in context.imports)


def _env(secrets: list[SecretFile], network: bool) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "OGPGY_INSTANCE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "OGPGY_PKI_DIR", "value": PKI_DIR},
        {"name": "OGPGY_DATA_DIR", "value": DATA_DIR},
        # The CronJob ogpgy-close-of-business is the cluster's scheduler of the bank's day (cronjobs.py):
        # one driver, its runs listed by kubectl; the in-process one would be safe beside it, but redundant.
        {"name": "OGPGY_CLOSE_OF_BUSINESS_SCHEDULER", "value": "false"},
    ]
    if network:
        # Where the payment network is: the overlay's ConfigMap (a simulator in dev, the real one in prod).
        ref = {"configMapKeyRef": {"name": PAYMENT_NETWORK, "key": "OGPGY_VELOCITYPAY_TARGET"}}
        env.append({"name": "OGPGY_VELOCITYPAY_TARGET", "valueFrom": ref})
    env += [_secret_env(s) for s in secrets if s.variable]
    env += [{"name": s.setting, "value": s.path} for s in secrets if s.path]
    return env


def _secret_mounts(secrets: list[SecretFile]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The file Secrets as read-only volumes: (volumes, mounts), one folder each."""
    volumes, mounts = [], []
    for secret in (s for s in secrets if s.path):
        name = _volume_name(secret)
        volumes.append({"name": name, "secret": {"secretName": secret.name, "defaultMode": 0o400}})
        mounts.append({"name": name, "mountPath": secret.path.rpartition("/")[0], "readOnly": True})
    return volumes, mounts


def _probe(service: str, period: int) -> dict[str, Any]:
    return {
        "grpc": {"port": HEALTH_PORT, "service": service},
        "periodSeconds": period,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }


def _container(spec: ProcessSpec, target: Target, secrets: list[SecretFile], network: bool) -> dict[str, Any]:
    _, secret_mounts = _secret_mounts(secrets)
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR + "/mesh", "readOnly": True},
        {"name": "pki", "mountPath": PKI_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        *secret_mounts,
    ]
    return {
        "name": spec.name,
        "image": target.image,
        "args": ["serve", spec.name, "--config", MESH_FILE],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            *([{"name": "connect", "containerPort": CONNECT_PORT, "protocol": "TCP"}] if spec.name != SIMULATOR else []),
        ],
        "env": _env(secrets, network),
        "volumeMounts": mounts,
        "startupProbe": {**_probe("liveness", 2), "failureThreshold": 30},
        "livenessProbe": _probe("liveness", 10),
        "readinessProbe": _probe("readiness", 5),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": restricted_container_security(),
        # The Service stops sending new calls while the endpoint is removed; then SIGTERM drains.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }


def pki_volume(spec: ProcessSpec) -> dict[str, Any]:
    """The process's certificates as mesh/pki.py lays them out, from Secrets cert-manager fills
    (kubernetes.io/tls: tls.crt, tls.key, ca.crt): its server certificate, and each of its
    contexts' client certificate."""
    server = {
        "secret": {
            "name": f"ogpgy-server-{spec.name}",
            "items": [
                {"key": "ca.crt", "path": "ca.pem"},
                {"key": "tls.crt", "path": f"servers/{spec.name}.pem"},
                {"key": "tls.key", "path": f"servers/{spec.name}.key", "mode": 0o400},
            ],
        }
    }
    contexts = [
        {
            "secret": {
                "name": f"ogpgy-context-{context}",
                "items": [
                    {"key": "tls.crt", "path": f"contexts/{context}.pem"},
                    {"key": "tls.key", "path": f"contexts/{context}.key", "mode": 0o400},
                ],
            }
        }
        for context in spec.contexts
    ]
    return {"name": "pki", "projected": {"sources": [server, *contexts]}}


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}}


def deployment(spec: ProcessSpec, target: Target, modules: Iterable[type]) -> dict[str, Any]:
    modules = list(modules)
    secrets = secrets_of(spec, modules)
    secret_volumes, _ = _secret_mounts(secrets)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": MESH_CONFIG}},
        pki_volume(spec),
        {"name": "data", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        *secret_volumes,
    ]
    labels = described(spec.name, target)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(service_name(spec.name), target, labels),
        "spec": {
            "replicas": spec.replica_count,
            "selector": {"matchLabels": selector(spec.name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {**labels, "ogpgy.bank/contexts": ".".join(spec.contexts)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security(),
                    "containers": [_container(spec, target, secrets, calls_the_network(spec, modules))],
                    "volumes": volumes,
                },
            },
        },
    }


def service(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    """Headless: the name resolves to every ready pod, which the callers' round robin balances."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service_name(spec.name), target, described(spec.name, target)),
        "spec": {
            "clusterIP": "None",
            "selector": selector(spec.name),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def edge_service(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    """A virtual address for the front door's upstreams (nginx resolves a name once, at start: a
    headless name would pin it to the pods of that moment; this address follows the ready pods)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(edge_name(spec.name), target, described(spec.name, target)),
        "spec": {
            "selector": selector(spec.name),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "connect", "port": CONNECT_PORT, "targetPort": "connect", "protocol": "TCP"},
            ],
        },
    }


def edge_name(process: str) -> str:
    return f"{service_name(process)}-edge"


def disruption_budget(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(service_name(spec.name), target, described(spec.name, target)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(spec.name)}},
    }
