"""`ogpgy deploy kubernetes`: the manifests rendered from mesh.toml validate against the Kubernetes
schemas (offline, kubernetes-validate), their NetworkPolicies allow exactly the calls the contexts'
imports declare, and the pods run as the image's user on a read-only root with gRPC probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.di import context_spec
from common.grpc.identity import allowed_importers
from common.grpc.services import services_of_servicer
from common.security.pki import spiffe_id
from mesh.cli import main
from mesh.config import DEFAULT_CONFIG, MeshConfig, load_mesh_config
from mesh.distributed import serve_settings
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.kubernetes import GRPC_PORT, HEALTH_PORT, Target, render, service_name

KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def config() -> MeshConfig:
    return load_mesh_config(DEFAULT_CONFIG, environ={}, known_contexts=CONTEXT_NAMES)


@pytest.fixture(scope="module")
def files(config: MeshConfig) -> dict[str, str]:
    return render(config, Target(), ALL_MODULES)


def _documents(files: dict[str, str], *names: str) -> list[dict[str, Any]]:
    return [doc for name in names for doc in yaml.safe_load_all(files[name]) if doc]


def _core(files: dict[str, str]) -> list[dict[str, Any]]:
    """Everything but the cert-manager resources (their schema is cert-manager's, not Kubernetes')."""
    return _documents(
        files, *(name for name in files if name.endswith(".yaml") and name != "kustomization.yaml" and "cert-manager" not in name)
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(files: dict[str, str], version: str) -> None:
    for doc in _core(files):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_kustomization_lists_every_process_and_generates_the_config_and_secrets(
    files: dict[str, str], config: MeshConfig
) -> None:
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    assert set(kustomization["resources"]) == {"namespace.yaml", *(f"{p}.yaml" for p in config.process_names())}
    assert kustomization["configMapGenerator"] == [{"name": "ogpgy-mesh", "files": ["mesh.toml"]}]
    assert {g["name"] for g in kustomization["secretGenerator"]} == {"ogpgy-secrets", "ogpgy-signing-key"}


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
    policies = {d["metadata"]["name"]: d for d in _core(files) if d["kind"] == "NetworkPolicy"}
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


def test_every_object_of_a_process_carries_the_recommended_labels(files: dict[str, str]) -> None:
    recommended = {"name", "instance", "version", "component", "part-of", "managed-by"}
    for doc in _core(files):
        if doc["metadata"]["name"].startswith("ogpgy-") and doc["kind"] in {"Deployment", "Service", "NetworkPolicy"}:
            labels = doc["metadata"]["labels"]
            assert {k.removeprefix("app.kubernetes.io/") for k in labels if k.startswith("app.kubernetes.io/")} == recommended
            if doc["kind"] == "Deployment":
                selector = doc["spec"]["selector"]["matchLabels"]
                assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}, "a selector never changes"


def test_pods_run_unprivileged_with_grpc_probes_and_the_mesh_replicas(files: dict[str, str], config: MeshConfig) -> None:
    deployments = {
        d["metadata"]["name"]: d for d in _core(files) if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("ogpgy-")
    }
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
    services = [d for d in _core(files) if d["kind"] == "Service" and d["metadata"]["name"].startswith("ogpgy-")]
    assert all(s["spec"]["clusterIP"] == "None" for s in services), "headless: the name resolves to every pod"


def test_the_clusters_mesh_configuration_listens_on_the_pod_and_dials_the_services_names(
    files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mesh.toml").write_text(files["mesh.toml"])
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


def test_the_certificates_carry_the_identities_the_servers_check(files: dict[str, str]) -> None:
    certificates = {d["metadata"]["name"]: d["spec"] for d in _documents(files, "optional/cert-manager.yaml")}
    assert certificates["ogpgy-server-account"]["uris"] == [spiffe_id("process", "account")]
    assert certificates["ogpgy-context-lending"]["uris"] == [spiffe_id("context", "lending")]


def test_ogpgy_deploy_kubernetes_writes_the_kustomization(tmp_path: Path) -> None:
    assert main(["deploy", "kubernetes", "--output", str(tmp_path / "k8s"), "--namespace", "bank"]) == 0
    assert yaml.safe_load((tmp_path / "k8s" / "kustomization.yaml").read_text())["namespace"] == "bank"
