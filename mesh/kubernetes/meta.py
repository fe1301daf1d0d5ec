"""What every rendered object shares: the target cluster, the ports, the paths inside the image and
the labels, so that each file of the package names them once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

PART_OF = "ogpgy-bank"
UID = 10001  # the image's user (Containerfile)
CONFIG_DIR, SECRETS_DIR, PKI_DIR, DATA_DIR = "/etc/ogpgy", "/etc/ogpgy/secrets", "/etc/ogpgy/pki", "/data"
GRPC_PORT, METRICS_PORT = 7100, 9100
CONNECT_PORT = 8100  # each bank process's Connect and gRPC-Web port, for the front door (mutual TLS)
FRONT_DOOR = "ogpgy-front-door"  # its Deployment, Service, ConfigMap and certificate's Secret
FRONT_DOOR_PORT, FRONT_DOOR_HEALTH_PORT = 8443, 8081  # TLS for callers; plaintext /healthz for the probes
# The kubelet's gRPC probes present no client certificate: health is served alone, in plaintext, here.
HEALTH_PORT = 7180
CLIENT_LABEL = "ogpgy.bank/client"  # pods (a gateway, an operator's shell, the CronJobs) allowed to call every process
MESH_CONFIG = "ogpgy-mesh"  # the ConfigMap holding the cluster's mesh.toml
SIMULATOR = "velocitypay"  # the payment network's simulator: a process of mesh.toml, run in dev only
PAYMENT_NETWORK = "ogpgy-payment-network"  # the ConfigMap saying where the payment network is, per overlay


@dataclass(frozen=True)
class Target:
    """The cluster the manifests are for. `payment_network` is where prod's payment context reaches
    the real payment network (dev runs the simulator in the namespace instead)."""

    namespace: str = "ogpgy"
    image: str = "ogpgy-bank:0.1.0"
    cluster_domain: str = "cluster.local"
    payment_network: str = "dns:///payments.example.net:443"
    front_door_image: str = "nginxinc/nginx-unprivileged:1.26-alpine"  # nginx as user 101 (no root, no port below 1024)
    front_door_host: str = "bank.example.net"  # the name callers reach the front door by (its certificate's)
    gateway_class: str = "ogpgy-gateway"  # the cluster's GatewayClass that passes TLS through to the door
    # where the Gateway's proxies connect to the door from, when they send the PROXY protocol ("":
    # they do not, and every caller is the Gateway's address to the door: see the README)
    proxied_from: str = ""


def service_name(process: str) -> str:
    return f"ogpgy-{process}"


def service_host(process: str, target: Target) -> str:
    """The headless Service's name in the cluster's DNS: every ready pod of `process`."""
    return f"{service_name(process)}.{target.namespace}.svc.{target.cluster_domain}"


def selector(name: str) -> dict[str, str]:
    """What selects an app's pods (never changes for a Deployment, so kept to two labels)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}


def described(name: str, target: Target, component: str = "context-process") -> dict[str, str]:
    """The recommended labels of every object (app.kubernetes.io/*)."""
    return {
        **selector(name),
        "app.kubernetes.io/instance": f"{PART_OF}-{target.namespace}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": target.image.rpartition(":")[2] or "latest",
        "app.kubernetes.io/managed-by": "ogpgy-deploy",
    }


def metadata(name: str, target: Target, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": target.namespace, "labels": labels}


def restricted_container_security() -> dict[str, Any]:
    """The Pod Security Standards' `restricted` profile, as the image's user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def documents(docs: Iterable[dict[str, Any]]) -> str:
    """Several objects as one multi-document YAML file."""
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)
