"""The kustomize layout, checked without kustomize (no kustomize binary installs here from the
registries this project uses): every file a kustomization names exists or is the operator's
secrets/, both overlays build on the base, their patches apply, and every Secret and ConfigMap a
workload of an overlay references is generated there (or filled by cert-manager). Also the roles
SQL and the CronJobs' commands."""

from __future__ import annotations

from datetime import date
from posixpath import normpath
from typing import Any

import pytest
import yaml

from mesh.cli import _parser
from mesh.cli_operator import business_day, business_month
from mesh.config import MeshConfig
from mesh.kubernetes import Target
from mesh.kubernetes.database import role_of
from tests.unit.kubernetes_files import documents, mesh_config, rendered

OVERLAYS = ("overlays/dev", "overlays/prod")


@pytest.fixture
def files() -> dict[str, str]:
    return rendered()


@pytest.fixture
def config() -> MeshConfig:
    return mesh_config()


def _kustomization(files: dict[str, str], folder: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(files[f"{folder}/kustomization.yaml"])
    return loaded


def _generator_files(entry: dict[str, Any]) -> list[str]:
    return [f.split("=", 1)[-1] for f in entry.get("files", [])]


def _build(files: dict[str, str], folder: str) -> tuple[list[dict[str, Any]], dict[tuple[str, str], set[str]]]:
    """What `kubectl apply -k folder` would apply, as far as these tests need: the objects of its
    resources (bases recursively), its patches applied, and the generated {(kind, name): keys}."""
    kustomization = _kustomization(files, folder)
    objects: list[dict[str, Any]] = []
    generated: dict[tuple[str, str], set[str]] = {}
    for resource in kustomization["resources"]:
        path = normpath(f"{folder}/{resource}")
        if f"{path}/kustomization.yaml" in files:
            base_objects, base_generated = _build(files, path)
            objects += base_objects
            generated |= base_generated
        else:
            objects += documents(files, path)
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for entry in kustomization.get(key, []):
            keys = {f.split("=", 1)[0] for f in entry.get("files", [])} | {v.split("=", 1)[0] for v in entry.get("literals", [])}
            generated[(kind, entry["name"])] = keys
    for patch in kustomization.get("patches", []):
        _apply(objects, patch["target"], yaml.safe_load(files[f"{folder}/{patch['path']}"]))
    return objects, generated


def _apply(objects: list[dict[str, Any]], target: dict[str, str], operations: list[dict[str, Any]]) -> None:
    """A JSON 6902 patch (replace only) on every object the target selects; each path must exist."""
    label, _, value = target["labelSelector"].partition("=")
    chosen = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["labels"].get(label) == value]
    assert chosen, f"the patch selects nothing: {target}"
    for obj in chosen:
        for op in operations:
            assert op["op"] == "replace"
            *parents, last = op["path"].strip("/").split("/")
            node: Any = obj
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            assert last in node, f"{op['path']} is not in {obj['metadata']['name']}"
            node[last] = op["value"]


def test_every_file_a_kustomization_names_exists_and_the_overlays_build_on_the_base(files: dict[str, str]) -> None:
    for folder in ("base", *OVERLAYS):
        kustomization = _kustomization(files, folder)
        named = [*kustomization["resources"], *(p["path"] for p in kustomization.get("patches", []))]
        for entry in kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", []):
            named += _generator_files(entry)
        for name in named:
            path = normpath(f"{folder}/{name}")
            exists = path in files or f"{path}/kustomization.yaml" in files
            assert exists or name.startswith("secrets/"), f"{folder}: {name} is neither rendered nor the operator's secrets/"
        if folder != "base":
            assert "../../base" in kustomization["resources"]
    assert not any("/secrets/" in name for name in files), "secrets are never rendered"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_and_config_map_a_workload_references_is_generated(files: dict[str, str], overlay: str) -> None:
    objects, generated = _build(files, overlay)
    certificates = {o["spec"]["secretName"] for o in objects if o["kind"] == "Certificate"}
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    pods += [o["spec"]["jobTemplate"]["spec"]["template"]["spec"] for o in objects if o["kind"] == "CronJob"]
    for pod in pods:
        for container in pod["containers"]:
            for variable in container.get("env", []):
                for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if ref in variable.get("valueFrom", {}):
                        wanted = variable["valueFrom"][ref]
                        assert wanted["key"] in generated[(kind, wanted["name"])], f"{overlay}: {variable['name']}"
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert ("Secret", name) in generated or name in certificates, f"{overlay}: {name}"
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in generated
            for source in volume.get("projected", {}).get("sources", []):
                assert source["secret"]["name"] in certificates, f"{overlay}: {source['secret']['name']}"


def test_the_simulator_and_throw_away_servers_are_devs_alone(files: dict[str, str]) -> None:
    dev, _ = _build(files, "overlays/dev")
    prod, prod_generated = _build(files, "overlays/prod")
    deployments = {o["metadata"]["name"]: o for o in dev if o["kind"] == "Deployment"}
    assert {"ogpgy-velocitypay", "redis", "postgres", "mail"} <= set(deployments)
    assert deployments["mail"]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "mailsim", "the bank's mail simulator"
    assert all(d["spec"]["replicas"] == 1 for d in deployments.values()), "dev's patch: one of each"
    in_prod = {o["metadata"]["name"] for o in prod if o["kind"] == "Deployment"}
    assert in_prod.isdisjoint({"ogpgy-velocitypay", "redis", "postgres", "mail"}), "prod runs no simulator"
    network = _kustomization(files, "overlays/prod")["configMapGenerator"]
    assert network == [{"name": "ogpgy-payment-network", "literals": [f"OGPGY_VELOCITYPAY_TARGET={Target().payment_network}"]}]
    egress = next(o for o in prod if o["metadata"]["name"] == "ogpgy-payment-payment-network")
    assert egress["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 443}], "out to the real network"
    assert ("Secret", "ogpgy-db-velocitypay") not in prod_generated


def test_the_roles_sql_gives_each_process_its_contexts_schemas(files: dict[str, str], config: MeshConfig) -> None:
    for overlay, processes in (("dev", config.processes), ("prod", [p for p in config.processes if p.name != "velocitypay"])):
        sql = files[f"overlays/{overlay}/roles.sql"]
        assert "REVOKE ALL ON SCHEMA public FROM PUBLIC;" in sql
        assert "REVOKE CREATE, TEMPORARY ON DATABASE" in sql
        for spec in processes:
            for context in spec.contexts:
                assert f'CREATE SCHEMA IF NOT EXISTS "{context}" AUTHORIZATION "{role_of(spec.name)}";' in sql
        assert ("ogpgy_velocitypay" in sql) == (overlay == "dev")
    assert "PASSWORD" not in files["overlays/prod/roles.sql"].replace("PASSWORD '...'", ""), "no password is rendered"


def test_the_cronjobs_run_the_operators_commands_once_at_a_time(files: dict[str, str], config: MeshConfig) -> None:
    objects = documents(files, "base/cronjobs.yaml")
    cronjobs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CronJob"}
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    commands = {"ogpgy-close-of-business": "interest"}
    assert set(cronjobs) == set(commands)
    for name, context in commands.items():
        spec = cronjobs[name]["spec"]
        assert spec["concurrencyPolicy"] == "Forbid" and spec["startingDeadlineSeconds"] > 0
        assert spec["jobTemplate"]["spec"]["backoffLimit"] >= 1
        pod = spec["jobTemplate"]["spec"]["template"]
        assert pod["metadata"]["labels"]["ogpgy.bank/client"] == "true", "let in by every process's policy"
        container = pod["spec"]["containers"][0]
        env = {v["name"]: v.get("value", v.get("valueFrom")) for v in container["env"]}
        process = config.process_of(context).name
        assert env["OGPGY_TARGET"] == f"dns:///ogpgy-{process}.ogpgy.svc.cluster.local:7100"
        assert env["OGPGY_IDENTITY_TARGET"] == "dns:///ogpgy-identity.ogpgy.svc.cluster.local:7100"
        assert env["OGPGY_PASSWORD"] == {"secretKeyRef": {"name": "ogpgy-admin", "key": "OGPGY_ADMIN_PASSWORD"}}
        args = _parser().parse_args(container["args"])  # the CLI takes them as rendered
        assert args.command == container["args"][0]
        out = policies[name]["spec"]["egress"][1]["to"]
        assert {t["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for t in out} == {"identity", process}


def test_a_scheduled_run_names_its_day_without_a_shell() -> None:
    today = date(2027, 3, 1)
    assert business_day("yesterday", today) == date(2027, 2, 28)
    assert business_day("today", today) == today
    assert business_day("2027-01-31", today) == date(2027, 1, 31)
    assert business_month("last", today) == date(2027, 2, 1)
    assert business_month("last", date(2027, 1, 15)) == date(2026, 12, 1)
    assert business_month("2026-11", today) == date(2026, 11, 1)
