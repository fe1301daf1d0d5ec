"""The front door in the cluster: the same nginx configuration `up --distributed` runs
(mesh/front_door.py), as a Deployment of an unprivileged nginx image, reached from outside
through a Gateway API Gateway that passes TLS through to it (a TLSRoute).

Why TLS passes through the Gateway instead of ending there: the door must present an identity of
its own to the contexts (their mutual TLS) and route gRPC, Connect and gRPC-Web by path and
content type to each process's two ports; the Gateway API's backend client certificates are not
in its standard channel, and a Gateway that terminated TLS would need them. nginx reaches each
process through a Service with a virtual address (workloads.edge_service), which follows the
ready pods; nginx resolves names once, at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.security.pki import spiffe_id
from mesh.config import MeshConfig
from mesh.front_door import NAME, Files, nginx_conf, routes
from mesh.kubernetes.certificates import leaf
from mesh.kubernetes.meta import (
    CONNECT_PORT,
    FRONT_DOOR,
    FRONT_DOOR_HEALTH_PORT,
    FRONT_DOOR_PORT,
    GRPC_PORT,
    Target,
    described,
    metadata,
    selector,
    service_host,
)
from mesh.kubernetes.policies import DNS
from mesh.kubernetes.workloads import edge_name

CONF_DIR = "/etc/ogpgy/front-door"  # the ConfigMap: nginx.conf
TLS_DIR = "/etc/ogpgy/front-door/tls"  # the certificate's Secret: tls.crt, tls.key, ca.crt
NGINX_UID = 101  # the unprivileged image's user
_COMPONENT = "front-door"


def _edge(process: str, port: int, target: Target) -> str:
    return f"{edge_name(process)}.{target.namespace}.svc.{target.cluster_domain}:{port}"


def nginx_config(config: MeshConfig, target: Target, modules: Iterable[type]) -> str:
    """The door's nginx.conf for the cluster: each process's gRPC and Connect ports through its
    edge Service, its certificate checked for its headless Service's name."""
    found = [
        replace(
            r,
            grpc=(_edge(r.process, GRPC_PORT, target),),
            connect=(_edge(r.process, CONNECT_PORT, target),),
            server_name=service_host(r.process, target),
        )
        for r in routes(config, modules)
    ]
    files = Files(Path(TLS_DIR) / "tls.crt", Path(TLS_DIR) / "tls.key", Path(TLS_DIR) / "ca.crt", Path("/tmp"), False)
    listen = f"0.0.0.0:{FRONT_DOOR_PORT}"
    return nginx_conf(listen, found, files, health_port=FRONT_DOOR_HEALTH_PORT, proxied_from=target.proxied_from)


def routed_processes(config: MeshConfig, modules: Iterable[type]) -> list[str]:
    return [r.process for r in routes(config, modules)]


def _container(target: Target) -> dict[str, Any]:
    def probe(period: int) -> dict[str, Any]:
        health = {"path": "/healthz", "port": FRONT_DOOR_HEALTH_PORT}
        return {"httpGet": health, "periodSeconds": period, "timeoutSeconds": 1, "failureThreshold": 3}

    return {
        "name": "nginx",
        "image": target.front_door_image,
        "command": ["nginx", "-c", f"{CONF_DIR}/nginx.conf", "-e", "stderr"],
        "ports": [
            {"name": "https", "containerPort": FRONT_DOOR_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": FRONT_DOOR_HEALTH_PORT, "protocol": "TCP"},
        ],
        "volumeMounts": [
            {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "livenessProbe": probe(10),
        "readinessProbe": probe(5),
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": _unprivileged(),
        # the Service stops sending new connections first; then nginx's SIGQUIT lets calls finish
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }


# nginx reads its certificate at start and at a reload: cert-manager renews it every 16 h into
# the Secret, whose mounted folder the kubelet swaps at once (its `..data` link); this watches the
# link and tells nginx (the pod shares one process namespace; the pid file is in the shared /tmp).
RELOADER = f"""seen=$(readlink {TLS_DIR}/..data)
while sleep 10; do
  now=$(readlink {TLS_DIR}/..data)
  if [ "$now" != "$seen" ] && kill -HUP "$(cat /tmp/nginx.pid)"; then seen=$now; echo "certificate renewed: nginx reloaded"; fi
done
"""


def _reloader(target: Target) -> dict[str, Any]:
    return {
        "name": "reloader",
        "image": target.front_door_image,
        "command": ["sh", "-c", RELOADER],
        "volumeMounts": [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}],
        "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
        "securityContext": _unprivileged(),
    }


def _unprivileged() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NGINX_UID,
        "runAsGroup": NGINX_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(target: Target) -> dict[str, Any]:
    labels = described(FRONT_DOOR, target, _COMPONENT)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(FRONT_DOOR, target, labels),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector(FRONT_DOOR)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    # fsGroup: the kubelet gives the Secret's files to nginx's group (0440 is root's alone otherwise)
                    "securityContext": {"runAsNonRoot": True, "fsGroup": NGINX_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "shareProcessNamespace": True,  # the reloader signals nginx
                    "containers": [_container(target), _reloader(target)],
                    "volumes": [
                        {"name": "config", "configMap": {"name": FRONT_DOOR}},
                        {"name": "tls", "secret": {"secretName": FRONT_DOOR, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }


def service(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(FRONT_DOOR, target, described(FRONT_DOOR, target, _COMPONENT)),
        "spec": {
            "selector": selector(FRONT_DOOR),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def network_policy(processes: list[str], target: Target) -> dict[str, Any]:
    """Anyone may reach the door's TLS port (it is the bank's public face) and the kubelet its
    health port; it calls only the processes it routes to, on their gRPC and Connect ports."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(FRONT_DOOR, target, described(FRONT_DOOR, target, _COMPONENT)),
        "spec": {
            "podSelector": {"matchLabels": selector(FRONT_DOOR)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": FRONT_DOOR_PORT}]}],
            "egress": [
                DNS,
                {
                    "to": [{"podSelector": {"matchLabels": selector(p)}} for p in processes],
                    "ports": [{"protocol": "TCP", "port": GRPC_PORT}, {"protocol": "TCP", "port": CONNECT_PORT}],
                },
            ],
        },
    }


def disruption_budget(target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(FRONT_DOOR, target, described(FRONT_DOOR, target, _COMPONENT)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(FRONT_DOOR)}},
    }


def certificate(target: Target) -> dict[str, Any]:
    """The door's identity to the contexts (a gateway's, never a context's) and its name to callers."""
    names = [target.front_door_host, f"{FRONT_DOOR}.{target.namespace}.svc.{target.cluster_domain}", FRONT_DOOR]
    return leaf(FRONT_DOOR, spiffe_id("gateway", NAME), names, target)


def gateway(target: Target) -> list[dict[str, Any]]:
    """A Gateway listening for the door's name on 443, passing TLS through, and the TLSRoute to the door."""
    labels = described(FRONT_DOOR, target, _COMPONENT)
    listener = {
        "name": "bank",
        "hostname": target.front_door_host,
        "port": 443,
        "protocol": "TLS",
        "tls": {"mode": "Passthrough"},
        "allowedRoutes": {"kinds": [{"kind": "TLSRoute"}]},
    }
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": metadata("ogpgy", target, labels),
            "spec": {"gatewayClassName": target.gateway_class, "listeners": [listener]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TLSRoute",
            "metadata": metadata(FRONT_DOOR, target, labels),
            "spec": {
                "parentRefs": [{"name": "ogpgy", "sectionName": "bank"}],
                "hostnames": [target.front_door_host],
                "rules": [{"backendRefs": [{"name": FRONT_DOOR, "port": 443}]}],
            },
        },
    ]


def front_door_objects(config: MeshConfig, target: Target, modules: Iterable[type]) -> list[dict[str, Any]]:
    """Everything of the door but its configuration (a generated ConfigMap: nginx.conf)."""
    processes = routed_processes(config, modules)
    return [
        deployment(target),
        service(target),
        disruption_budget(target),
        network_policy(processes, target),
        certificate(target),
        *gateway(target),
    ]
