"""`ogpgy status`: every replica of the mesh, its health (gRPC health) and, from its Prometheus
metrics, its circuit breakers and its outbox and event consumer lags."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

import grpc
from prometheus_client.parser import text_string_to_metric_families

from common.net import bare_host, is_wildcard
from mesh.config import MeshConfig
from mesh.distributed import SUPERVISOR_FILE, check_serving
from mesh.pki import operator_credentials, pki_of

_BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True)
class ReplicaStatus:
    process: str
    address: str
    contexts: tuple[str, ...]
    health: str
    breakers: str = ""
    outbox_lag: str = ""
    consumer_lag: str = ""
    restarts: str = "-"  # by the launcher's supervisor ("-": not supervised, e.g. under Kubernetes)


def scrape(address: str, timeout: float = 1.0) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples at http://address/metrics by metric name; empty when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _joined(samples: list[tuple[dict[str, str], float]], label: str, show: type = int) -> str:
    return ", ".join(f"{labels[label]}={_BREAKER_STATES.get(int(v), '?') if show is str else int(v)}" for labels, v in samples)


def _supervision(config: MeshConfig) -> dict[str, dict[str, object]]:
    """What the launcher's supervisor last wrote; empty when no launcher supervises this mesh."""
    try:
        state: dict[str, dict[str, object]] = json.loads((config.data_dir / SUPERVISOR_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state


def _health(target: str, tls: grpc.ChannelCredentials | None) -> str:
    return "SERVING" if check_serving(target, tls=tls) else "DOWN"


def mesh_status(config: MeshConfig) -> list[ReplicaStatus]:
    """Every replica's health (asked over the mesh's mutual TLS, as the operator), metrics and
    restarts."""
    tls = operator_credentials(config.data_dir) if config.mutual_tls else None
    supervised = _supervision(config)
    rows = []
    for spec in config.processes:
        if spec.target:  # replicas behind a name: the name's health, as a client would get it
            rows.append(ReplicaStatus(f"{spec.name}[*]", spec.target, spec.contexts, _health(spec.target, tls)))
        for index, address in enumerate(spec.addresses):
            health = _health(address, tls)
            metrics = scrape(spec.metrics[index]) if spec.metrics else {}
            rows.append(
                ReplicaStatus(
                    process=f"{spec.name}[{index}]",
                    address=address,
                    contexts=spec.contexts,
                    health=health,
                    breakers=_joined(metrics.get("ogpgy_breaker_state", []), "breaker", str),
                    outbox_lag=_joined(metrics.get("ogpgy_outbox_lag_events", []), "context"),
                    consumer_lag=_joined(metrics.get("ogpgy_event_consumer_lag_events", []), "consumer"),
                    restarts=str(supervised.get(f"{spec.name}[{index}]", {}).get("restarts", "-")),
                )
            )
    return rows


def front_door_status(config: MeshConfig, timeout: float = 2.0) -> str | None:
    """Whether the front door passes a call through (identity's public GetSigningKeys, as any
    caller with the bank's CA would make it); None when the mesh has no door."""
    if not config.front_door or not config.mutual_tls:
        return None
    from ogpgy.identity.v1 import identity_service_pb2 as pb
    from ogpgy.identity.v1 import identity_service_pb2_grpc as pb_grpc

    try:
        credentials = grpc.ssl_channel_credentials((pki_of(config.data_dir) / "ca.pem").read_bytes())
        host, _, port = config.front_door.rpartition(":")
        door = f"localhost:{port}" if is_wildcard(bare_host(host)) else config.front_door  # its certificate names localhost
        with grpc.secure_channel(door, credentials) as channel:
            pb_grpc.IdentityServiceStub(channel).GetSigningKeys(pb.GetSigningKeysRequest(), timeout=timeout)
    except (grpc.RpcError, OSError):
        return "DOWN"
    return "SERVING"
