"""The mesh's own certificate authority, and the short-lived certificates it issues.

Every process kind gets a certificate whose URI SAN names it the SPIFFE way
(`spiffe://<trust domain>/context/<name>`): a server reads the calling process's identity from
the verified peer certificate instead of trusting a token anyone with a shared key could mint.
Certificates also carry DNS and IP SANs, because gRPC clients verify a server by host name.
Keys are ECDSA P-256 (fast handshakes, supported by every gRPC stack) and are written 0600.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.net import bare_host

TRUST_DOMAIN = "ogpgy.bank"
CA_LIFETIME = timedelta(days=365)
LEAF_LIFETIME = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=5)  # a certificate is valid from a little before it was made
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def spiffe_id(kind: str, name: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The identity a certificate carries: `spiffe://ogpgy.bank/context/account`."""
    return f"spiffe://{trust_domain}/{kind}/{name}"


def identity_of(uri: str, kind: str = "context", trust_domain: str = TRUST_DOMAIN) -> str | None:
    """The name in a SPIFFE id of `kind` in the trust domain; None for any other id."""
    prefix = f"spiffe://{trust_domain}/{kind}/"
    name = uri[len(prefix) :] if uri.startswith(prefix) else ""
    return name if name and "/" not in name else None


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded, as gRPC credentials take them."""

    certificate: bytes
    private_key: bytes
    not_after: datetime

    def renew_after(self, now: datetime, lifetime: timedelta) -> bool:
        """Past two thirds of its life: time to use a new one (the old one still works meanwhile)."""
        return now >= self.not_after - lifetime / 3


def _write_private(path: Path, data: bytes) -> None:
    """Writes a secret readable by its owner only, never world-readable even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _alternative_names(identity: str | None, hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)] if identity else []
    for host in dict.fromkeys([*LOOPBACK_NAMES, *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(bare_host(host))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class CertificateAuthority:
    """The bank's CA: one key and a self-signed certificate in `directory` (ca.key 0600, ca.pem)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def open(cls, directory: Path, *, now: datetime | None = None) -> CertificateAuthority:
        """The CA of `directory`, made on first use."""
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        authority = cls.create(now=now)
        _write_private(key_path, _key_pem(authority._key))
        cert_path.write_bytes(authority.certificate_pem)
        return authority

    @classmethod
    def create(cls, *, now: datetime | None = None, lifetime: timedelta = CA_LIFETIME) -> CertificateAuthority:
        """A new CA held in memory (tests, and `open` on first use)."""
        now = now or datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OgPgy Bank"),
                x509.NameAttribute(NameOID.COMMON_NAME, "OgPgy Bank mesh CA"),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(
        self,
        identity: str | None,
        *,
        hosts: Iterable[str] = (),
        lifetime: timedelta = LEAF_LIFETIME,
        now: datetime | None = None,
    ) -> Issued:
        """A certificate for `identity` (a SPIFFE id; None for a server that only proves its host
        names), good as a server and as a client, for `hosts` and the loopback names."""
        now = now or datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        common_name = identity or "ogpgy server"
        # X.509 keeps whole seconds: the renewal clock must run on the instant the peers check.
        not_after = min(now + lifetime, self.certificate.not_valid_after_utc).replace(microsecond=0)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(_alternative_names(identity, hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key), not_after)


def save(directory: Path, name: str, issued: Issued) -> None:
    """`<name>.pem` (the certificate) and `<name>.key` (its key, 0600), the key first: a reader
    that sees the new certificate finds its key."""
    _write_private(directory / f"{name}.key", issued.private_key)
    certificate = directory / f"{name}.pem"
    tmp = certificate.with_suffix(".pem.tmp")
    tmp.write_bytes(issued.certificate)
    os.replace(tmp, certificate)


def load(directory: Path, name: str) -> Issued:
    certificate = (directory / f"{name}.pem").read_bytes()
    not_after = x509.load_pem_x509_certificate(certificate).not_valid_after_utc
    return Issued(certificate, (directory / f"{name}.key").read_bytes(), not_after)
