"""The bank's CA: what its certificates say, how long they live, where its key is kept."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.security.pki import CertificateAuthority, identity_of, spiffe_id

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


def test_a_spiffe_id_names_a_context_of_the_banks_trust_domain_only() -> None:
    assert spiffe_id("context", "payment") == "spiffe://ogpgy.bank/context/payment"
    assert identity_of("spiffe://ogpgy.bank/context/payment") == "payment"
    for other in (
        "spiffe://evil.bank/context/payment",
        "spiffe://ogpgy.bank/user/payment",
        "spiffe://ogpgy.bank/context/payment/admin",
        "spiffe://ogpgy.bank/context/",
        "payment",
    ):
        assert identity_of(other) is None, other


def test_a_certificate_carries_its_identity_and_the_loopback_names_and_serves_both_ends() -> None:
    authority = CertificateAuthority.create(now=NOW)
    issued = authority.issue(spiffe_id("context", "account"), hosts=["account.internal", "10.0.0.7"], now=NOW)
    certificate = x509.load_pem_x509_certificate(issued.certificate)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://ogpgy.bank/context/account"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "account.internal"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1", "10.0.0.7"]
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certificate.issuer == authority.certificate.subject
    assert certificate.not_valid_after_utc == NOW + timedelta(hours=24)


def test_a_certificate_never_outlives_its_ca_and_is_renewed_after_two_thirds_of_its_life() -> None:
    authority = CertificateAuthority.create(now=NOW, lifetime=timedelta(hours=1))
    issued = authority.issue(None, lifetime=timedelta(hours=24), now=NOW)
    assert issued.not_after == authority.certificate.not_valid_after_utc == NOW + timedelta(hours=1)
    short = authority.issue(None, lifetime=timedelta(minutes=30), now=NOW)
    assert not short.renew_after(NOW + timedelta(minutes=19, seconds=59), timedelta(minutes=30))
    assert short.renew_after(NOW + timedelta(minutes=20), timedelta(minutes=30))


def test_the_ca_key_is_its_owners_alone_and_the_ca_is_made_once(tmp_path: Path) -> None:
    first = CertificateAuthority.open(tmp_path / "pki")
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    again = CertificateAuthority.open(tmp_path / "pki")
    assert again.certificate_pem == first.certificate_pem
