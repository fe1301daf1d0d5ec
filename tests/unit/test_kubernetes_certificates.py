"""The cert-manager resources: valid against cert-manager's CRD schemas (offline, through the
@kubernetes-models packages: scripts/validate-crds.mjs), a chain that bootstraps the bank's CA from
nothing, and every certificate a pod or a CronJob mounts issued by it with the SPIFFE id the
servers check."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from common.security.pki import spiffe_id
from tests.unit.kubernetes_files import every_object, rendered, validate_custom_resources, workloads


@pytest.fixture
def files() -> dict[str, str]:
    return rendered()


def _cert_manager(files: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for _, doc in every_object(files) if doc["apiVersion"] == "cert-manager.io/v1"]


def test_every_cert_manager_object_validates_against_its_crd(files: dict[str, str]) -> None:
    objects = _cert_manager(files)
    assert {d["kind"] for d in objects} == {"Issuer", "Certificate"}
    assert validate_custom_resources(objects) == [None] * len(objects)


def test_the_validation_bites(files: dict[str, str]) -> None:
    """An invalid field is refused, whichever CRD it is of (by apiVersion and kind)."""
    certificate = next(d for d in _cert_manager(files) if d["kind"] == "Certificate")
    wrong_type, wrong_value, missing = (copy.deepcopy(certificate) for _ in range(3))
    wrong_type["spec"]["isCA"] = "yes"
    wrong_value["spec"]["privateKey"]["algorithm"] = "DSA"
    del missing["spec"]["issuerRef"]
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "front-door"},
        "spec": {"parentRefs": [{"name": "gateway"}]},
    }
    bad_route = copy.deepcopy(route)
    bad_route["spec"]["parentRefs"] = "gateway"
    answers = validate_custom_resources([wrong_type, wrong_value, missing, route, bad_route])
    assert answers[3] is None, "a valid Gateway API object passes"
    for refused, field in zip(
        (answers[0], answers[1], answers[2], answers[4]), ("isCA", "algorithm", "issuerRef", "parentRefs"), strict=True
    ):
        assert refused is not None and any(field in reason for reason in refused), (field, refused)


def test_the_chain_bootstraps_the_banks_ca(files: dict[str, str]) -> None:
    objects = _cert_manager(files)
    issuers = {d["metadata"]["name"]: d["spec"] for d in objects if d["kind"] == "Issuer"}
    certificates = {d["metadata"]["name"]: d["spec"] for d in objects if d["kind"] == "Certificate"}
    authority = certificates["ogpgy-ca"]
    assert issuers[authority["issuerRef"]["name"]] == {"selfSigned": {}}, "the CA is self-signed"
    assert authority["isCA"] is True
    assert issuers["ogpgy-ca"] == {"ca": {"secretName": authority["secretName"]}}, "the CA Issuer signs with the CA's key"
    for name, spec in certificates.items():
        if name != "ogpgy-ca":
            assert spec["issuerRef"] == {"name": "ogpgy-ca", "kind": "Issuer", "group": "cert-manager.io"}, name
            assert spec["issuerRef"]["name"] in issuers, "an issuer that is rendered"
            assert not spec.get("isCA")


def _mounted_secrets(pod_spec: dict[str, Any]) -> set[str]:
    found = set()
    for volume in pod_spec["volumes"]:
        if "projected" in volume:
            found |= {s["secret"]["name"] for s in volume["projected"]["sources"]}
    return found


def test_every_certificate_a_pod_or_cronjob_mounts_is_issued_with_the_identity_servers_check(files: dict[str, str]) -> None:
    certificates = {d["spec"]["secretName"]: d["spec"] for d in _cert_manager(files) if d["kind"] == "Certificate"}
    for deployment in workloads(files):
        process = deployment["metadata"]["name"].removeprefix("ogpgy-")
        contexts = deployment["spec"]["template"]["metadata"]["labels"]["ogpgy.bank/contexts"].split(".")
        mounted = _mounted_secrets(deployment["spec"]["template"]["spec"])
        assert mounted == {f"ogpgy-server-{process}", *(f"ogpgy-context-{c}" for c in contexts)}
        assert certificates[f"ogpgy-server-{process}"]["uris"] == [spiffe_id("process", process)]
        assert f"ogpgy-{process}.ogpgy.svc.cluster.local" in certificates[f"ogpgy-server-{process}"]["dnsNames"]
        for context in contexts:
            assert certificates[f"ogpgy-context-{context}"]["uris"] == [spiffe_id("context", context)]
    cronjobs = [d for _, d in every_object(files) if d["kind"] == "CronJob"]
    assert cronjobs
    for cronjob in cronjobs:
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"ogpgy-operator"}
    assert certificates["ogpgy-operator"]["uris"] == [spiffe_id("operator", "ogpgy")], "as mesh/pki.py issues it"
    assert "client auth" in certificates["ogpgy-operator"]["usages"]
