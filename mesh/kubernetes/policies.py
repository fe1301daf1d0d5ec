"""NetworkPolicies: the contexts' import declarations (the allow-list the builder and the wire
enforce) as who may call whom, by process; and egress to nothing a pod does not use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.di import context_spec
from mesh.config import MeshConfig, ProcessSpec
from mesh.kubernetes.meta import (
    CLIENT_LABEL,
    CONNECT_PORT,
    FRONT_DOOR,
    GRPC_PORT,
    METRICS_PORT,
    PART_OF,
    Target,
    described,
    metadata,
    selector,
    service_name,
)

# Egress every process needs whatever it serves: names (the cluster's DNS), and its database and
# cache, which may be outside the namespace (their URLs are in the Secrets, so any address).
DNS: dict[str, Any] = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
_STORES: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": 5432}, {"protocol": "TCP", "port": 6379}]}
SMTP_PORTS = (25, 465, 587, 2525)  # 2525: the mail simulator of the dev overlay
_SMTP: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port} for port in SMTP_PORTS]}


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


def grpc_to(processes: Iterable[str]) -> dict[str, Any]:
    """Egress to the gRPC port of the pods of `processes`."""
    return {
        "to": [{"podSelector": {"matchLabels": selector(p)}} for p in processes],
        "ports": [{"protocol": "TCP", "port": GRPC_PORT}],
    }


def _egress(spec: ProcessSpec, callees: list[str]) -> list[dict[str, Any]]:
    """Out only to what the process uses: DNS, PostgreSQL and Redis, SMTP where notification is
    served, and the gRPC port of the processes its contexts import (identity for every one)."""
    rules: list[dict[str, Any]] = [DNS, _STORES]
    if "notification" in spec.contexts:
        rules.append(_SMTP)
    if callees:
        rules.append(grpc_to(callees))
    return rules


def network_policy(
    spec: ProcessSpec, callers: list[str], target: Target, callees: list[str] | None = None, *, front_door: bool = False
) -> dict[str, Any]:
    """Calls in only from the processes whose contexts import this one's (and from pods labelled
    as the bank's clients: an operator, the CronJobs), and from the front door where it routes to
    this process (its gRPC and Connect ports); metrics from the namespace's monitoring. Calls out
    only as `_egress` says."""
    grpc_from = [{"podSelector": {"matchLabels": selector(caller)}} for caller in callers]
    grpc_from.append({"podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}})
    door = [
        {
            "from": [{"podSelector": {"matchLabels": selector(FRONT_DOOR)}}],
            "ports": [{"protocol": "TCP", "port": GRPC_PORT}, {"protocol": "TCP", "port": CONNECT_PORT}],
        }
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(service_name(spec.name), target, described(spec.name, target)),
        "spec": {
            "podSelector": {"matchLabels": selector(spec.name)},
            "policyTypes": ["Ingress", "Egress"],
            "egress": _egress(spec, callees or []),
            "ingress": [
                {"from": grpc_from, "ports": [{"protocol": "TCP", "port": GRPC_PORT}]},
                *(door if front_door else []),
                {
                    "from": [{"podSelector": {"matchLabels": {"ogpgy.bank/monitoring": "true"}}}],
                    "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
                },
            ],
        },
    }


def client_policy(name: str, calls: list[str], target: Target, component: str) -> dict[str, Any]:
    """A client's pods (a CronJob's) take no calls and call only `calls` (and DNS)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, target, described(name, target, component)),
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS, grpc_to(calls)],
        },
    }


def network_egress_policy(process: str, port: int, target: Target) -> dict[str, Any]:
    """prod: the payment process reaches the real payment network, outside the cluster, on its port
    (NetworkPolicies add up: this widens the process's own policy by this one rule)."""
    name = f"{service_name(process)}-payment-network"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, target, described(process, target)),
        "spec": {
            "podSelector": {"matchLabels": selector(process)},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }


def server_policy(name: str, port: int, target: Target) -> dict[str, Any]:
    """dev: a throw-away server (Redis, PostgreSQL, the mail simulator) takes connections on its
    port from the bank's pods only, and makes none."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, target, described(name, target, "dev-infrastructure")),
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
            "egress": [],
        },
    }
