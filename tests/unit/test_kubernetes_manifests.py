"""`ogpgy deploy kubernetes`: the base and both overlays rendered from mesh.toml validate against the
Kubernetes schemas (offline, kubernetes-validate), their NetworkPolicies allow exactly the calls the
contexts' imports declare, and the pods run as the image's user on a read-only root with gRPC
probes, each holding only the Secrets its contexts read. The cert-manager side: tests/unit/
test_kubernetes_certificates.py; the layout, roles and CronJobs: test_kubernetes_layout.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.di import context_spec
from common.grpc.identity import allowed_importers
from common.grpc.services import services_of_servicer
from mesh.cli import main
from mesh.config import MeshConfig, load_mesh_config
from mesh.distributed import serve_settings
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.kubernetes import GRPC_PORT, HEALTH_PORT, Target, render, service_name
from tests.unit.kubernetes_files import BUILT_IN, documents, every_object, mesh_config, rendered, workloads

KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


@pytest.fixture
def config() -> MeshConfig:
    return mesh_config()


@pytest.fixture
def files() -> dict[str, str]:
    return rendered()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_of_base_and_overlays_validates(files: dict[str, str], version: str) -> None:
    custom = []
    for _, doc in every_object(files):
        if doc["apiVersion"].split("/")[0] in BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)
        else:
            custom.append(doc["apiVersion"])
    assert set(custom) == {"cert-manager.io/v1", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1alpha2"}, (
        "the rest is cert-manager's and the Gateway API's (test_kubernetes_certificates.py, test_front_door_manifests.py)"
    )


def _process_objects(files: dict[str, str]) -> list[dict[str, Any]]:
    """The objects of every process of mesh.toml: the base's and the dev overlay's simulator."""
    return [
        d
        for name, d in every_object(files)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "context-process"
    ]


def test_network_policies_allow_exactly_the_calls_the_imports_declare(files: dict[str, str], config: MeshConfig) -> None:
    """The wire's allow-list (which context may call which method), by process, is the policies'."""
    serving = {
        binding.full_name: spec.name
        for spec in map(context_spec, ALL_MODULES)
        for exported in spec.exports
        for binding in services_of_servicer(exported)
    }
    declared: dict[str, set[str]] = {p: set() for p in config.process_names()}
    for path, importers in allowed_importers(context_spec(m) for m in ALL_MODULES).items():
        callee = config.process_of(serving[path.split("/")[1]]).name
        declared[callee] |= {config.process_of(i).name for i in importers} - {callee}
    declared["identity"] |= set(config.process_names()) - {"identity"}  # every process asks it for token revocations
    policies = {d["metadata"]["name"]: d for d in _process_objects(files) if d["kind"] == "NetworkPolicy"}
    for process, callers in declared.items():
        rule = policies[service_name(process)]["spec"]["ingress"][0]
        allowed = {f["podSelector"]["matchLabels"].get("app.kubernetes.io/name") for f in rule["from"]} - {None}
        assert allowed == callers, f"{process}: policy {sorted(allowed)}, imports {sorted(callers)}"
        assert rule["ports"] == [{"protocol": "TCP", "port": GRPC_PORT}]
    for process in config.process_names():  # and out: to exactly the processes that let it in
        callees = {callee for callee, callers in declared.items() if process in callers}
        policy = policies[service_name(process)]["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        grpc_out = [r for r in policy["egress"] if r.get("ports") == [{"protocol": "TCP", "port": GRPC_PORT}]]
        reached = {t["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in grpc_out for t in r["to"]}
        assert reached == callees, f"{process}: egress {sorted(reached)}, imports {sorted(callees)}"
        ports = {port["port"] for r in policy["egress"] for port in r["ports"]}
        assert {53, 5432, 6379} <= ports, "names, the database and the cache"
        assert (25 in ports) == ("notification" in config.process(process).contexts), "mail from notification alone"


def test_every_object_carries_the_recommended_labels(files: dict[str, str]) -> None:
    recommended = {"name", "instance", "version", "component", "part-of", "managed-by"}
    for name, doc in every_object(files):
        if doc["kind"] == "Namespace":
            continue
        labels = doc["metadata"]["labels"]
        found = {k.removeprefix("app.kubernetes.io/") for k in labels if k.startswith("app.kubernetes.io/")}
        assert found == recommended, f"{name}: {doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}, "a selector never changes"


def test_pods_run_unprivileged_with_grpc_probes_and_the_mesh_replicas(files: dict[str, str], config: MeshConfig) -> None:
    deployments = {d["metadata"]["name"]: d for d in _process_objects(files) if d["kind"] == "Deployment"}
    for spec in config.processes:
        pod = deployments[service_name(spec.name)]
        assert pod["spec"]["replicas"] == spec.replica_count
        container = pod["spec"]["template"]["spec"]["containers"][0]
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
        for kind, service in (("startupProbe", "liveness"), ("livenessProbe", "liveness"), ("readinessProbe", "readiness")):
            assert container[kind]["grpc"] == {"port": HEALTH_PORT, "service": service}, "the plaintext health port"
        assert {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"} in container["ports"]
        assert container["args"][:2] == ["serve", spec.name]
    services = {d["metadata"]["name"]: d for d in _process_objects(files) if d["kind"] == "Service"}
    for spec in config.processes:
        assert services[service_name(spec.name)]["spec"]["clusterIP"] == "None", "headless: the name resolves to every pod"
        edge = services.get(f"{service_name(spec.name)}-edge")  # the front door's way in: a virtual address
        if spec.name != "velocitypay":
            assert edge is not None and "clusterIP" not in edge["spec"], spec.name
            assert {p["name"] for p in edge["spec"]["ports"]} == {"grpc", "connect"}
        else:
            assert edge is None, "the door does not route to the outside world's simulator"


def _secrets_of(pod: dict[str, Any]) -> set[str]:
    """Every Secret a pod template references, by env or by volume (the certificates aside)."""
    spec = pod["spec"]["template"]["spec"]
    named = {
        v["valueFrom"]["secretKeyRef"]["name"]
        for c in spec["containers"]
        for v in c.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    return named | {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}


def test_each_pod_gets_only_the_secrets_it_reads(files: dict[str, str]) -> None:
    pods = {d["metadata"]["name"].removeprefix("ogpgy-"): d for d in _process_objects(files) if d["kind"] == "Deployment"}
    held = {process: _secrets_of(pod) for process, pod in pods.items()}
    holders = {secret: {p for p, s in held.items() if secret in s} for secret in set().union(*held.values())}
    assert holders["ogpgy-signing-key"] == holders["ogpgy-admin"] == {"identity"}, "the keys to the bank: identity alone"
    assert holders["ogpgy-smtp"] == {"notification"}
    assert holders["ogpgy-network-member-key"] == {"payment", "velocitypay"}
    assert holders["ogpgy-page-token-key"] == set(held) - {"velocitypay"}, "every context that lists pages"
    for process, secrets in held.items():
        assert f"ogpgy-db-{process}" in secrets, "its own database role"
        assert not {s for s in secrets if s.startswith("ogpgy-db-")} - {f"ogpgy-db-{process}"}, "and no other's"
    env = {e["name"] for e in pods["payment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "OGPGY_VELOCITYPAY_TARGET" in env, "the payment network, where the overlay's ConfigMap says"
    for pod in pods.values():  # the CronJob ogpgy-close-of-business closes the day in the cluster
        values = {e["name"]: e.get("value") for e in pod["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert values["OGPGY_CLOSE_OF_BUSINESS_SCHEDULER"] == "false"


def test_the_clusters_mesh_configuration_listens_on_the_pod_and_dials_the_services_names(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mesh.toml").write_text(files["base/mesh.toml"])
    environ = {
        "OGPGY_REDIS_URL": "redis://redis:6379/0",
        "OGPGY_POSTGRES_DSN": "postgresql://p@postgres/ogpgy",
        "OGPGY_SMTP_URL": "smtp://mail:25",
    }
    cluster = load_mesh_config(tmp_path / "mesh.toml", environ=environ, known_contexts=CONTEXT_NAMES)
    monkeypatch.setenv("OGPGY_INSTANCE_NAME", "ogpgy-account-7d9f-x2x")
    settings = serve_settings(cluster, "account", 0, "pw")
    assert (settings.host, settings.port, settings.instance_name) == ("0.0.0.0", GRPC_PORT, "ogpgy-account-7d9f-x2x")
    assert settings.health_port == HEALTH_PORT
    assert settings.addresses["customer"] == f"dns:///ogpgy-customer.ogpgy.svc.cluster.local:{GRPC_PORT}"
    prod = load_mesh_config(
        tmp_path / "mesh.toml",
        environ={**environ, "OGPGY_VELOCITYPAY_TARGET": "dns:///pay.example:443"},
        known_contexts=CONTEXT_NAMES,
    )
    assert serve_settings(prod, "payment", 0).addresses["velocitypay"] == "dns:///pay.example:443", "prod's network"


def test_ogpgy_deploy_kubernetes_writes_the_base_and_overlays(tmp_path: Path) -> None:
    output = tmp_path / "k8s"
    assert (
        main(["deploy", "kubernetes", "--output", str(output), "--namespace", "bank", "--payment-network", "dns:///pay:443"]) == 0
    )
    assert yaml.safe_load((output / "base" / "kustomization.yaml").read_text())["namespace"] == "bank"
    prod = yaml.safe_load((output / "overlays" / "prod" / "kustomization.yaml").read_text())
    assert {"name": "ogpgy-payment-network", "literals": ["OGPGY_VELOCITYPAY_TARGET=dns:///pay:443"]} in prod[
        "configMapGenerator"
    ]


def test_the_rendered_objects_are_the_workloads_the_node_runs(files: dict[str, str], config: MeshConfig) -> None:
    """tests/pods.py runs the base's Deployments and dev's simulator: together every process of mesh.toml."""
    assert {d["metadata"]["name"] for d in workloads(files)} == {service_name(p) for p in config.process_names()}
    assert documents(files, "base/namespace.yaml")[0]["metadata"]["name"] == "ogpgy"
    assert render(config, Target(), ALL_MODULES) == files, "rendering is deterministic"


def test_every_pod_can_read_the_secrets_it_mounts(files: dict[str, str]) -> None:
    """A Secret's files are root's, with the volume's mode, unless the pod names an fsGroup (the
    kubelet then gives them that group, readable): a non-root container with a mode that leaves
    others out needs the fsGroup of its own group, or it cannot read its key (the emulation runs
    as root and would not notice)."""
    for _, doc in every_object(files):
        template = doc["spec"]["template"] if doc["kind"] == "Deployment" else None
        if doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
        if template is None:
            continue
        pod = template["spec"]
        closed = [v for v in pod.get("volumes", []) if "secret" in v and v["secret"].get("defaultMode", 0o644) & 0o004 == 0]
        closed += [v for v in pod.get("volumes", []) if "projected" in v]  # items with mode 0400
        for container in pod["containers"]:
            user = container.get("securityContext", {}).get("runAsUser", 0)
            if closed and user != 0:
                group = container["securityContext"].get("runAsGroup", user)
                assert pod.get("securityContext", {}).get("fsGroup") == group, (doc["metadata"]["name"], container["name"])
