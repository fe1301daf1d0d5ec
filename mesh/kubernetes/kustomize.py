"""The kustomize layout: `base/` holds the bank's processes, `overlays/dev` and `overlays/prod` what
differs per environment.

dev adds what a development cluster lacks: the payment network's simulator (a process of
mesh.toml, never rendered into prod), throw-away Redis, PostgreSQL (the roles applied at its first
start) and the mail simulator (`ogpgy mailsim` from the bank's image), and smaller pods. prod
reaches PostgreSQL, Redis, the mail server and the payment network outside at the URLs in its
Secrets and ConfigMap. Both generate the per-purpose Secrets (secrets.py) from files the operator
creates under the overlay's `secrets/`, never rendered and never in git.
"""

from __future__ import annotations

from typing import Any

import yaml

from mesh.config import MeshConfig, ProcessSpec
from mesh.kubernetes.database import dsn_of, roles_sql
from mesh.kubernetes.meta import (
    FRONT_DOOR,
    GRPC_PORT,
    MESH_CONFIG,
    PAYMENT_NETWORK,
    SIMULATOR,
    Target,
    described,
    metadata,
    selector,
    service_host,
)
from mesh.kubernetes.policies import network_egress_policy, server_policy
from mesh.kubernetes.secrets import ADMIN, MEMBER_KEY, PAGE_KEY, REDIS, SIGNING_KEY, SMTP, SecretFile, database_secret

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
ROLES_CONFIG = "ogpgy-postgres-roles"
DEV_DATABASE = "ogpgy"
MAIL_PORT = 2525


def bank_processes(config: MeshConfig) -> list[ProcessSpec]:
    """The processes every environment runs: all of mesh.toml but the payment network's simulator."""
    return [spec for spec in config.processes if SIMULATOR not in spec.contexts]


def simulators(config: MeshConfig) -> list[ProcessSpec]:
    return [spec for spec in config.processes if SIMULATOR in spec.contexts]


def kustomization(body: dict[str, Any]) -> str:
    return yaml.safe_dump({**KUSTOMIZATION, **body}, sort_keys=False)


def base_kustomization(target: Target, resources: list[str]) -> str:
    return kustomization(
        {
            "namespace": target.namespace,
            "resources": resources,
            "configMapGenerator": [
                {"name": MESH_CONFIG, "files": ["mesh.toml"]},
                {"name": FRONT_DOOR, "files": ["nginx.conf=front-door.conf"]},
            ],
        }
    )


def _from_file(secret: SecretFile) -> dict[str, Any]:
    return {"name": secret.name, "files": [f"{secret.key}=secrets/{secret.name.removeprefix('ogpgy-')}"]}


def _from_literal(secret: SecretFile, value: str) -> dict[str, Any]:
    return {"name": secret.name, "literals": [f"{secret.key}={value}"]}


def _network(address: str) -> dict[str, Any]:
    return {"name": PAYMENT_NETWORK, "literals": [f"OGPGY_VELOCITYPAY_TARGET={address}"]}


# What the operator creates in every overlay's secrets/ (README): keys and the first admin's password.
KEY_FILES = (ADMIN, SIGNING_KEY, PAGE_KEY, MEMBER_KEY)


def dev_kustomization(config: MeshConfig, target: Target, resources: list[str]) -> str:
    """dev: the simulators and throw-away servers beside the base; the URLs and DSNs are theirs
    (PostgreSQL trusts the namespace's connections: a development cluster only), the keys the operator's."""
    processes = config.processes
    return kustomization(
        {
            "resources": ["../../base", *resources],
            "configMapGenerator": [
                _network(f"dns:///{service_host(SIMULATOR, target)}:{GRPC_PORT}"),
                {"name": ROLES_CONFIG, "files": ["roles.sql"]},
            ],
            "secretGenerator": [
                *(_from_file(secret) for secret in KEY_FILES),
                _from_literal(REDIS, "redis://redis:6379/0"),
                _from_literal(SMTP, f"smtp://mail:{MAIL_PORT}"),
                *(_from_literal(database_secret(p.name), dsn_of(p.name, "postgres:5432", DEV_DATABASE)) for p in processes),
            ],
            "patches": [
                {"path": "small-pods.yaml", "target": {"kind": "Deployment", "labelSelector": selected}}
                for selected in (_BANK_PODS, _FRONT_DOOR_PODS)
            ],
        }
    )


_BANK_PODS = "app.kubernetes.io/component=context-process"
_FRONT_DOOR_PODS = "app.kubernetes.io/component=front-door"


def small_pods() -> str:
    """dev's patch of every process's Deployment and the front door's: one replica, less CPU asked for."""
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/template/spec/containers/0/resources/requests/cpu", "value": "25m"},
    ]
    return yaml.safe_dump(ops, sort_keys=False)


def prod_kustomization(config: MeshConfig, target: Target, resources: list[str]) -> str:
    """prod: PostgreSQL, Redis, SMTP and the payment network outside; every URL and DSN a file of
    the operator's, the payment network's address rendered from --payment-network."""
    return kustomization(
        {
            "resources": ["../../base", *resources],
            "configMapGenerator": [_network(target.payment_network)],
            "secretGenerator": [
                _from_file(secret)
                for secret in (*KEY_FILES, REDIS, SMTP, *(database_secret(p.name) for p in bank_processes(config)))
            ],
        }
    )


def network_egress(config: MeshConfig, target: Target) -> list[dict[str, Any]]:
    """prod's egress to the payment network, for the processes that call it, on its target's port."""
    port = int(target.payment_network.rsplit(":", 1)[1])
    callers = [p.name for p in config.processes if "payment" in p.contexts]
    return [network_egress_policy(name, port, target) for name in callers]


def _server(
    name: str, image: str, port: int, target: Target, volumes: list[dict[str, Any]] | None = None, **container: Any
) -> list[dict[str, Any]]:
    """A throw-away server of dev: its Deployment, Service and NetworkPolicy."""
    labels = described(name, target, "dev-infrastructure")
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [{"name": name, "image": image, "ports": [{"containerPort": port, "protocol": "TCP"}], **container}],
        **({"volumes": volumes} if volumes else {}),
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(name, target, labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector(name)},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, target, labels),
            "spec": {"selector": selector(name), "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]},
        },
        server_policy(name, port, target),
    ]


def dev_infrastructure(target: Target) -> list[dict[str, Any]]:
    """Redis, PostgreSQL (its first start applies roles.sql) and the mail simulator for a
    development cluster: no persistence, no replication, reachable from the bank's pods only."""
    postgres_env = [
        {"name": "POSTGRES_DB", "value": DEV_DATABASE},
        {"name": "POSTGRES_PASSWORD", "value": "development-only"},
        {"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"},  # the roles log in without a password: dev only
    ]
    roles = {"name": "roles", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True}
    mail = ["mailsim", "--host", "0.0.0.0", "--port", str(MAIL_PORT)]
    return [
        *_server("redis", "redis:7-alpine", 6379, target),
        *_server(
            "postgres",
            "postgres:16-alpine",
            5432,
            target,
            env=postgres_env,
            volumes=[{"name": "roles", "configMap": {"name": ROLES_CONFIG}}],
            volumeMounts=[roles],
        ),
        *_server("mail", target.image, MAIL_PORT, target, args=mail),
    ]


def dev_roles(config: MeshConfig) -> str:
    return roles_sql(config.processes, DEV_DATABASE)


def prod_roles(config: MeshConfig) -> str:
    return roles_sql(bank_processes(config))
