"""The front door as rendered for the cluster: its Gateway API objects valid against the Gateway
API's CRDs (offline, scripts/validate-crds.mjs), its nginx configuration routing every public
service of the contexts to its process's edge Service and closing the mesh's own methods, its
identity a gateway's, and the NetworkPolicies letting it reach exactly the processes it routes to.
(tests/integration/test_kubernetes_run.py runs the door's pod and calls through it.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from common.di import context_spec
from common.grpc.services import services_of_servicer
from common.security.pki import spiffe_id
from mesh.embedded import ALL_MODULES
from mesh.kubernetes.meta import CONNECT_PORT, FRONT_DOOR, GRPC_PORT
from tests.unit.kubernetes_files import every_object, rendered, validate_custom_resources

BANK = ("identity", "customer", "account", "payment", "lending", "interest", "notification")


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return rendered()


def _objects(files: dict[str, str], kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in every_object(files) if doc["kind"] == kind]


def test_the_gateway_and_its_route_validate_against_the_gateway_apis_crds(files: dict[str, str]) -> None:
    found = [doc for _, doc in every_object(files) if doc["apiVersion"].startswith("gateway.networking.k8s.io/")]
    assert {d["kind"] for d in found} == {"Gateway", "TLSRoute"}
    assert validate_custom_resources(found) == [None] * len(found)
    route = next(d for d in found if d["kind"] == "TLSRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": FRONT_DOOR, "port": 443}], "TLS passes through to the door"


def test_every_public_service_is_routed_to_its_process_and_the_meshs_own_methods_are_closed(files: dict[str, str]) -> None:
    conf = files["base/front-door.conf"]
    for module in ALL_MODULES:
        spec = context_spec(module)
        if spec.external:
            continue
        for servicer in spec.exports:
            for binding in services_of_servicer(servicer):
                block = re.search(rf"location /{re.escape(binding.full_name)}/ \{{(.*?)\n    \}}", conf, re.S)
                assert block is not None, binding.full_name
                assert f"grpc_pass grpcs://{spec.name}_grpc;" in block.group(1)
                assert f"proxy_pass https://{spec.name}_connect;" in block.group(1)
                for method in getattr(servicer, "MESH_METHODS", ()):
                    closed = re.search(rf"location = /{re.escape(binding.full_name)}/{method} \{{(.*?)\n    \}}", conf, re.S)
                    assert closed is not None and "return 404;" in closed.group(1), method
    for process in BANK:
        edge = f"ogpgy-{process}-edge.ogpgy.svc.cluster.local"
        assert f"server {edge}:{GRPC_PORT};" in conf and f"server {edge}:{CONNECT_PORT};" in conf
    assert "velocitypay" not in conf, "the outside world's simulator is not the bank's to expose"
    assert "ssl_verify_client optional;" in conf and "grpc_ssl_verify on;" in conf and "proxy_ssl_verify on;" in conf


def test_the_doors_certificate_is_a_gateways_and_its_pod_is_unprivileged(files: dict[str, str]) -> None:
    certificate = next(c for c in _objects(files, "Certificate") if c["metadata"]["name"] == FRONT_DOOR)
    assert certificate["spec"]["uris"] == [spiffe_id("gateway", "front-door")]
    door = next(d for d in _objects(files, "Deployment") if d["metadata"]["name"] == FRONT_DOOR)
    pod = door["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "tls", "secret": {"secretName": FRONT_DOOR, "defaultMode": 0o440}} in pod["volumes"]
    assert "OGPGY_ADMIN_PASSWORD" not in str(pod), "the door holds no secret of the bank's but its own key"


def test_network_policies_let_the_door_reach_exactly_the_processes_it_routes_to(files: dict[str, str]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _objects(files, "NetworkPolicy")}
    door_selector = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": FRONT_DOOR, "app.kubernetes.io/part-of": "ogpgy-bank"}}
    }
    both = [{"protocol": "TCP", "port": GRPC_PORT}, {"protocol": "TCP", "port": CONNECT_PORT}]
    for process in (*BANK, "velocitypay"):
        admitted = {"from": [door_selector], "ports": both} in policies[f"ogpgy-{process}"]["ingress"]
        assert admitted == (process != "velocitypay"), process
    egress = policies[FRONT_DOOR]["egress"][1]
    assert {t["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for t in egress["to"]} == set(BANK)
    assert egress["ports"] == both
