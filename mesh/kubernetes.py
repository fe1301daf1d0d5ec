"""Kubernetes manifests from the mesh configuration (`ogpgy deploy kubernetes`), kustomize-ready.

One configuration, several targets: the process kinds of mesh.toml (which contexts share a
process, how many replicas) become a Deployment and a headless Service each; the contexts' import
declarations (the allow-list the builder and the wire enforce) become the NetworkPolicies. Redis,
PostgreSQL and the mail server are outside (their URLs in the Secret); `dev/` has a Redis and a
PostgreSQL for a development cluster.

Why kustomize and not Helm: the output is plain manifests an operator can read and diff, generated
from the one source that already says what runs where; an overlay patches what differs per
environment (image tag, resources, replicas) without a template language in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.di import context_spec
from common.security.pki import spiffe_id
from mesh.config import MeshConfig, ProcessSpec

PART_OF = "ogpgy-bank"
UID = 10001  # the image's user (Containerfile)
CONFIG_DIR, SECRETS_DIR, PKI_DIR, DATA_DIR = "/etc/ogpgy", "/etc/ogpgy/secrets", "/etc/ogpgy/pki", "/data"
SECRETS = "ogpgy-secrets"  # OGPGY_ADMIN_PASSWORD, OGPGY_POSTGRES_DSN, OGPGY_REDIS_URL, OGPGY_SMTP_URL, page-token-key
SIGNING_KEY = "ogpgy-signing-key"  # identity-signing-key.pem: mounted in the identity process only
GRPC_PORT, METRICS_PORT = 7100, 9100
# The kubelet's gRPC probes present no client certificate: health is served alone, in plaintext, here.
HEALTH_PORT = 7180
CLIENT_LABEL = "ogpgy.bank/client"  # pods (a gateway, an operator's shell) allowed to call every process


@dataclass(frozen=True)
class Target:
    namespace: str = "ogpgy"
    image: str = "ogpgy-bank:0.1.0"
    cluster_domain: str = "cluster.local"


def _labels(process: str) -> dict[str, str]:
    """What selects a process's pods (never changes for a Deployment)."""
    return {"app.kubernetes.io/name": process, "app.kubernetes.io/part-of": PART_OF}


def _described(process: str, target: Target) -> dict[str, str]:
    """The recommended labels of every object of a process (app.kubernetes.io/*)."""
    return {
        **_labels(process),
        "app.kubernetes.io/instance": f"{PART_OF}-{target.namespace}",
        "app.kubernetes.io/component": "context-process",
        "app.kubernetes.io/version": target.image.rpartition(":")[2] or "latest",
        "app.kubernetes.io/managed-by": "ogpgy-deploy",
    }


def service_name(process: str) -> str:
    return f"ogpgy-{process}"


def cluster_mesh_toml(config: MeshConfig, target: Target) -> str:
    """The mesh configuration every pod reads: each process listens on the pod's port and is
    reached through its headless Service's name (every ready pod's address)."""
    lines = [
        "# Rendered by `ogpgy deploy kubernetes` from the mesh configuration; the URLs come from the Secret.",
        "[mesh]",
        f'data_dir = "{DATA_DIR}"',
        'redis = "external"',
        'postgres = "external"',
        'smtp = "external"',
        "",
    ]
    for spec in config.processes:
        host = f"{service_name(spec.name)}.{target.namespace}.svc.{target.cluster_domain}"
        lines += [
            f"[process.{spec.name}]",
            "contexts = [" + ", ".join(f'"{c}"' for c in spec.contexts) + "]",
            f"replicas = {spec.replica_count}",
            f'listen = "0.0.0.0:{GRPC_PORT}"',
            f'target = "dns:///{host}:{GRPC_PORT}"',
            f"metrics_port = {METRICS_PORT}",
            f"health_port = {HEALTH_PORT}",
            "",
        ]
    return "\n".join(lines)


def callers_of(config: MeshConfig, process: ProcessSpec, modules: Iterable[type]) -> list[str]:
    """The processes whose contexts import one of `process`'s contexts (the wire allow-list, by
    process), and every process for identity (each one asks it for token revocations)."""
    specs = [context_spec(m) for m in modules]
    callers = set()
    for spec in specs:
        if any(i.from_context in process.contexts for i in spec.imports) and spec.name not in process.contexts:
            callers.add(config.process_of(spec.name).name)
    if "identity" in process.contexts:
        callers |= {p.name for p in config.processes if p.name != process.name}
    return sorted(callers)


def callees_of(config: MeshConfig, process: ProcessSpec, modules: Iterable[type]) -> list[str]:
    """The processes `process` calls: those it is a caller of (callers_of, inverted)."""
    modules = list(modules)
    return sorted(p.name for p in config.processes if process.name in callers_of(config, p, modules))


def _container(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    env = [
        {"name": "OGPGY_INSTANCE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "OGPGY_SECRETS_DIR", "value": SECRETS_DIR},
        {"name": "OGPGY_PKI_DIR", "value": PKI_DIR},
        {"name": "OGPGY_DATA_DIR", "value": DATA_DIR},
        {"name": "OGPGY_PAGE_KEY_FILE", "value": f"{SECRETS_DIR}/page-token-key"},
        *(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRETS, "key": name}}}
            for name in ("OGPGY_ADMIN_PASSWORD", "OGPGY_POSTGRES_DSN", "OGPGY_REDIS_URL", "OGPGY_SMTP_URL")
        ),
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR + "/mesh", "readOnly": True},
        {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
        {"name": "pki", "mountPath": PKI_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if "identity" in spec.contexts:
        env.append({"name": "OGPGY_SIGNING_KEY_PATH", "value": f"{CONFIG_DIR}/signing/identity-signing-key.pem"})
        mounts.append({"name": "signing-key", "mountPath": f"{CONFIG_DIR}/signing", "readOnly": True})

    def probe(service: str, period: int) -> dict[str, Any]:
        return {
            "grpc": {"port": HEALTH_PORT, "service": service},
            "periodSeconds": period,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        }

    return {
        "name": spec.name,
        "image": target.image,
        "args": ["serve", spec.name, "--config", f"{CONFIG_DIR}/mesh/mesh.toml"],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "volumeMounts": mounts,
        "startupProbe": {**probe("liveness", 2), "failureThreshold": 30},
        "livenessProbe": probe("liveness", 10),
        "readinessProbe": probe("readiness", 5),
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # The Service stops sending new calls while the endpoint is removed; then SIGTERM drains.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }


def _pki_volume(spec: ProcessSpec) -> dict[str, Any]:
    """The process's certificates as mesh/pki.py lays them out, from Secrets cert-manager fills
    (kubernetes.io/tls: tls.crt, tls.key, ca.crt): its server certificate, and each of its
    contexts' client certificate."""
    sources = [
        {
            "secret": {
                "name": f"ogpgy-server-{spec.name}",
                "items": [
                    {"key": "ca.crt", "path": "ca.pem"},
                    {"key": "tls.crt", "path": f"servers/{spec.name}.pem"},
                    {"key": "tls.key", "path": f"servers/{spec.name}.key", "mode": 0o400},
                ],
            }
        },
        *(
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
        ),
    ]
    return {"name": "pki", "projected": {"sources": sources}}


def deployment(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": "ogpgy-mesh"}},
        {"name": "secrets", "secret": {"secretName": SECRETS, "items": [{"key": "page-token-key", "path": "page-token-key"}]}},
        _pki_volume(spec),
        {"name": "data", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if "identity" in spec.contexts:
        volumes.append({"name": "signing-key", "secret": {"secretName": SIGNING_KEY, "defaultMode": 0o400}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service_name(spec.name), "namespace": target.namespace, "labels": _described(spec.name, target)},
        "spec": {
            "replicas": spec.replica_count,
            "selector": {"matchLabels": _labels(spec.name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {**_described(spec.name, target), "ogpgy.bank/contexts": ".".join(spec.contexts)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [_container(spec, target)],
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
        "metadata": {"name": service_name(spec.name), "namespace": target.namespace, "labels": _described(spec.name, target)},
        "spec": {
            "clusterIP": "None",
            "selector": _labels(spec.name),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def disruption_budget(spec: ProcessSpec, target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": service_name(spec.name), "namespace": target.namespace, "labels": _described(spec.name, target)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(spec.name)}},
    }


# Egress every process needs whatever it serves: names (the cluster's DNS), and its database and
# cache, which are outside the namespace (their URLs are in the Secret, so any address).
_DNS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
_STORES = {"ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 6379}]}
_SMTP = {"ports": [{"protocol": "TCP", "port": port} for port in (25, 465, 587)]}


def _egress(spec: ProcessSpec, callees: list[str]) -> list[dict[str, Any]]:
    """Out only to what the process uses: DNS, PostgreSQL and Redis, SMTP where notification is
    served, and the gRPC port of the processes its contexts import (identity for every one)."""
    rules: list[dict[str, Any]] = [_DNS, _STORES]
    if "notification" in spec.contexts:
        rules.append(_SMTP)
    if callees:
        to = [{"podSelector": {"matchLabels": _labels(callee)}} for callee in callees]
        rules.append({"to": to, "ports": [{"protocol": "TCP", "port": GRPC_PORT}]})
    return rules


def network_policy(spec: ProcessSpec, callers: list[str], target: Target, callees: list[str] | None = None) -> dict[str, Any]:
    """Calls in only from the processes whose contexts import this one's (and from pods labelled
    as the bank's clients: a gateway, an operator); metrics from the namespace's monitoring.
    Calls out only as `_egress` says."""
    grpc_from = [{"podSelector": {"matchLabels": _labels(caller)}} for caller in callers]
    grpc_from.append({"podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": service_name(spec.name), "namespace": target.namespace, "labels": _described(spec.name, target)},
        "spec": {
            "podSelector": {"matchLabels": _labels(spec.name)},
            "policyTypes": ["Ingress", "Egress"],
            "egress": _egress(spec, callees or []),
            "ingress": [
                {"from": grpc_from, "ports": [{"protocol": "TCP", "port": GRPC_PORT}]},
                {
                    "from": [{"podSelector": {"matchLabels": {"ogpgy.bank/monitoring": "true"}}}],
                    "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
                },
            ],
        },
    }


def certificates(config: MeshConfig, target: Target, issuer: str = "ogpgy-ca") -> list[dict[str, Any]]:
    """cert-manager Certificates that fill the Secrets the pods mount (optional: any tool that
    writes kubernetes.io/tls Secrets with ca.crt will do). The SPIFFE ids are the ones the servers
    check (common/security/pki.py)."""

    def certificate(name: str, uri: str, dns: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": name, "namespace": target.namespace},
            "spec": {
                "secretName": name,
                "duration": "24h",
                "renewBefore": "8h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "uris": [uri],
                **({"dnsNames": dns} if dns else {}),
                "issuerRef": {"name": issuer, "kind": "Issuer"},
            },
        }

    found = []
    for spec in config.processes:
        host = f"{service_name(spec.name)}.{target.namespace}.svc.{target.cluster_domain}"
        found.append(certificate(f"ogpgy-server-{spec.name}", spiffe_id("process", spec.name), [host, service_name(spec.name)]))
        found += [certificate(f"ogpgy-context-{c}", spiffe_id("context", c), []) for c in spec.contexts]
    return found


def dev_infrastructure(target: Target) -> list[dict[str, Any]]:
    """Redis and PostgreSQL for a development cluster (no persistence, no replication)."""

    def server(name: str, image: str, port: int, env: list[dict[str, str]]) -> list[dict[str, Any]]:
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": name, "image": image, "ports": [{"containerPort": port}], "env": env}]},
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
                "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port}]},
            },
        ]

    postgres_env = [{"name": "POSTGRES_DB", "value": "ogpgy"}, {"name": "POSTGRES_PASSWORD", "value": "development-only"}]
    return server("redis", "redis:7-alpine", 6379, []) + server("postgres", "postgres:16-alpine", 5432, postgres_env)


def _documents(docs: Iterable[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def render(config: MeshConfig, target: Target, modules: Iterable[type]) -> dict[str, str]:
    """{relative path: YAML} of the whole kustomization."""
    modules = list(modules)
    files: dict[str, str] = {"mesh.toml": cluster_mesh_toml(config, target)}
    resources = ["namespace.yaml"]
    files["namespace.yaml"] = _documents([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target.namespace}}])
    for spec in config.processes:
        name = f"{spec.name}.yaml"
        files[name] = _documents(
            [
                deployment(spec, target),
                service(spec, target),
                disruption_budget(spec, target),
                network_policy(spec, callers_of(config, spec, modules), target, callees_of(config, spec, modules)),
            ]
        )
        resources.append(name)
    files["optional/cert-manager.yaml"] = _documents(certificates(config, target))
    files["dev/infrastructure.yaml"] = _documents(dev_infrastructure(target))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": target.namespace,
        "resources": resources,
        "configMapGenerator": [{"name": "ogpgy-mesh", "files": ["mesh.toml"]}],
        # Created by the operator beside this file (see the README): never rendered, never in git.
        "secretGenerator": [
            {
                "name": SECRETS,
                "files": [
                    f"secrets/{name}"
                    for name in (
                        "OGPGY_ADMIN_PASSWORD",
                        "OGPGY_POSTGRES_DSN",
                        "OGPGY_REDIS_URL",
                        "OGPGY_SMTP_URL",
                        "page-token-key",
                    )
                ],
            },
            {"name": SIGNING_KEY, "files": ["secrets/identity-signing-key.pem"]},
        ],
    }
    files["kustomization.yaml"] = yaml.safe_dump(kustomization, sort_keys=False)
    return files


def write(files: dict[str, str], output: Path) -> list[Path]:
    written = []
    for relative, text in sorted(files.items()):
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
