"""cert-manager resources that bootstrap the bank's CA and issue every certificate the mesh uses.

The chain: a self-signed Issuer signs one CA Certificate (isCA, its key in the Secret `ogpgy-ca`),
and the CA Issuer `ogpgy-ca` signs, from that Secret, the leaves: one per process kind for its
server (the Service's names), one per context for its channels, and the operator's (what the
CronJobs and a person's shell present). The SPIFFE ids are the ones the servers check
(common/security/pki.py); leaves live 24 h and are renewed 8 h before, as `up --distributed` does.
"""

from __future__ import annotations

from typing import Any

from common.security.pki import spiffe_id
from mesh.config import MeshConfig
from mesh.kubernetes.meta import Target, described, metadata, service_host, service_name

CA = "ogpgy-ca"  # the CA Issuer's name, the CA Certificate's and its Secret's
SELF_SIGNED = "ogpgy-selfsigned"
OPERATOR = "ogpgy-operator"  # the operator's certificate and its Secret
_COMPONENT = "certificates"
_LEAF_USAGES = ["digital signature", "server auth", "client auth"]  # as mesh/pki.py issues them


def _labels(target: Target) -> dict[str, str]:
    return described("ogpgy-pki", target, _COMPONENT)


def issuers(target: Target) -> list[dict[str, Any]]:
    """The self-signed Issuer, the CA Certificate it signs, and the CA Issuer that signs the leaves."""
    selfsigned = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": metadata(SELF_SIGNED, target, _labels(target)),
        "spec": {"selfSigned": {}},
    }
    authority = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": metadata(CA, target, _labels(target)),
        "spec": {
            "isCA": True,
            "commonName": "OgPgy Bank mesh CA",
            "secretName": CA,
            "duration": "8760h",  # a year, as the launcher's CA (common/security/pki.py CA_LIFETIME)
            "renewBefore": "720h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["cert sign", "crl sign", "digital signature"],
            "issuerRef": {"name": SELF_SIGNED, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }
    ca_issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": metadata(CA, target, _labels(target)),
        "spec": {"ca": {"secretName": CA}},
    }
    return [selfsigned, authority, ca_issuer]


def leaf(name: str, uri: str, dns: list[str], target: Target, usages: list[str] | None = None) -> dict[str, Any]:
    """A certificate the CA Issuer signs into the kubernetes.io/tls Secret `name` (with ca.crt)."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": metadata(name, target, _labels(target)),
        "spec": {
            "secretName": name,
            "duration": "24h",
            "renewBefore": "8h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "uris": [uri],
            **({"dnsNames": dns} if dns else {}),
            "usages": usages or _LEAF_USAGES,
            "issuerRef": {"name": CA, "kind": "Issuer", "group": "cert-manager.io"},
        },
    }


def process_certificates(config: MeshConfig, target: Target, processes: list[str] | None = None) -> list[dict[str, Any]]:
    """The server certificate of each process of `processes` (default: all) and its contexts'."""
    found = []
    for spec in config.processes:
        if processes is not None and spec.name not in processes:
            continue
        dns = [service_host(spec.name, target), service_name(spec.name)]
        found.append(leaf(f"ogpgy-server-{spec.name}", spiffe_id("process", spec.name), dns, target))
        found += [leaf(f"ogpgy-context-{c}", spiffe_id("context", c), [], target) for c in spec.contexts]
    return found


def operator_certificate(target: Target) -> dict[str, Any]:
    """The operator's: names no context (a user still proves who they are with a token)."""
    return leaf(OPERATOR, spiffe_id("operator", "ogpgy"), [], target, ["digital signature", "client auth"])
