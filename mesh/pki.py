"""The certificates of a distributed mesh, and how one of its processes uses them.

The launcher (`ogpgy up --distributed`) holds the bank's CA and issues, into `<data_dir>/pki/`:
- `contexts/<context>`: the identity of a context (`spiffe://ogpgy.bank/context/<name>`), which
  its channels present: the server reads who is calling from it and checks the RPC against what
  that context imported;
- `servers/<process>`: what a process kind's server presents, for the hosts of its addresses;
- `clients/operator`: for the launcher's health checks, `ogpgy status` and people's clients,
  which name no context (a user still proves who they are with a token).
A process reads only the CA's certificate and certificates; a renewed server certificate file
serves the process's new connections without a restart.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import grpc

from common.grpc.tls import CertificateFile, channel_credentials
from common.security.pki import LEAF_LIFETIME, CertificateAuthority, load, save, spiffe_id
from mesh.config import MeshConfig, ProcessSpec

OPERATOR = "operator"
RECHECK_SECONDS = 5.0  # how often a process looks for its contexts' renewed client certificates


def pki_of(data_dir: Path) -> Path:
    return data_dir / "pki"


def server_hosts(process: ProcessSpec) -> set[str]:
    """The names a process's server certificate holds: each replica's address, or the name the
    replicas are reached at (dns:///account.ogpgy.svc.cluster.local:7103 -> that name)."""
    hosts = {address.rsplit(":", 1)[0].strip("[]") for address in process.addresses}
    if process.target:
        hosts.add(process.target.rsplit(":", 1)[0].rsplit("/", 1)[-1])
    return hosts


def issue_mesh_certificates(config: MeshConfig, contexts: tuple[str, ...], lifetime: timedelta = LEAF_LIFETIME) -> None:
    """Every certificate the mesh of `config` needs, issued now (again: renewed)."""
    pki = pki_of(config.data_dir)
    authority = CertificateAuthority.open(pki)
    for context in contexts:
        save(pki / "contexts", context, authority.issue(spiffe_id("context", context), lifetime=lifetime))
    for process in config.processes:
        hosts = sorted(server_hosts(process))
        save(pki / "servers", process.name, authority.issue(spiffe_id("process", process.name), hosts=hosts, lifetime=lifetime))
    save(pki / "clients", OPERATOR, authority.issue(spiffe_id(OPERATOR, "ogpgy"), lifetime=lifetime))


def operator_credentials(data_dir: Path) -> grpc.ChannelCredentials:
    """A client's credentials in the mesh of `data_dir`: trusts its CA, presents the operator's certificate."""
    pki = pki_of(data_dir)
    return channel_credentials((pki / "ca.pem").read_bytes(), load(pki / "clients", OPERATOR))


class MutualTls:
    """One process's side of the mesh's mutual TLS."""

    def __init__(self, pki: Path, server_certificate: CertificateFile, *, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.pki = pki
        self.server_certificate = server_certificate
        self._recheck = recheck_seconds
        self._clients: dict[
            str, tuple[int, grpc.ChannelCredentials, float]
        ] = {}  # importer -> (file stamp, credentials, checked)

    @property
    def ca_certificate(self) -> bytes:
        return (self.pki / "ca.pem").read_bytes()

    def http_certificate(self) -> CertificateFile:
        """The process's server certificate for another port (each port renews on its own)."""
        return CertificateFile(self.pki / "servers", self.server_certificate.name, self.ca_certificate)

    @property
    def server(self) -> grpc.ServerCredentials:
        """Its server demands a certificate of the mesh's CA from every client."""
        return self.server_certificate.credentials(require_client_certificate=True)

    def channels_of(self, importer: str) -> grpc.ChannelCredentials:
        """The channels of `importer` present its certificate (the callee learns who calls from
        it): the one in its file now, looked at again every few seconds, so that a renewed
        certificate is presented by the connections made after it."""
        now = time.monotonic()
        known = self._clients.get(importer)
        if known is not None and now - known[2] < self._recheck:
            return known[1]
        stamp = (self.pki / "contexts" / f"{importer}.pem").stat().st_mtime_ns
        credentials = known[1] if known is not None and known[0] == stamp else self._load(importer)
        self._clients[importer] = (stamp, credentials, now)
        return credentials

    def _load(self, importer: str) -> grpc.ChannelCredentials:
        return channel_credentials((self.pki / "ca.pem").read_bytes(), load(self.pki / "contexts", importer))


def mutual_tls(pki: Path, process: str) -> MutualTls:
    return MutualTls(pki, CertificateFile(pki / "servers", process, (pki / "ca.pem").read_bytes()))
