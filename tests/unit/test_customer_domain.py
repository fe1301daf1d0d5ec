"""KYC rules and validation of the customer domain, pure functions with hand-computed values."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import pytest

from common.errors import ValidationFailed
from common.validation import Violations
from services.customer.domain import (
    Address,
    Application,
    DocumentType,
    IdentityDocument,
    KycReason,
    KycStatus,
    SanctionsEntry,
    SanctionsList,
    age_on,
    check_digit,
    has_valid_check_digit,
    run_kyc,
    validate_application,
)
from services.customer.repository import CsvSanctionsSource

NOW = datetime(2026, 6, 15, 12, tzinfo=timezone.utc)


def application(**overrides: object) -> Application:
    fields: dict[str, object] = dict(
        given_name="Ada",
        family_name="Lovelace",
        email="ada@example.com",
        phone="",
        date_of_birth=date(1990, 12, 10),
        document=IdentityDocument(DocumentType.PASSPORT, "AB1234564", "GB"),
        address=Address(("1 Main St",), "London", "N1", "GB"),
    )
    fields.update(overrides)
    return Application(**fields)  # type: ignore[arg-type]


def test_icao_check_digit_computed_by_hand() -> None:
    # A=10*7 + B=11*3 + 1*1 + 2*7 + 3*3 + 4*1 + 5*7 + 6*3 = 184 -> 4
    assert check_digit("AB123456") == 4
    assert has_valid_check_digit("AB1234564")
    assert not has_valid_check_digit("AB1234563")


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(2008, 6, 15), date(2026, 6, 15), 18),  # eighteenth birthday today
        (date(2008, 6, 16), date(2026, 6, 15), 17),  # tomorrow
        (date(2008, 2, 29), date(2026, 2, 28), 17),  # leap-day birth, common year
        (date(2008, 2, 29), date(2026, 3, 1), 18),
    ],
)
def test_age_in_completed_years(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


def test_adult_with_good_document_is_verified() -> None:
    kyc = run_kyc(application(), SanctionsList(), NOW)
    assert kyc.status is KycStatus.VERIFIED and kyc.reasons == ()


def test_every_failed_rule_is_a_reason() -> None:
    sanctions = SanctionsList.of([SanctionsEntry("Ada Lovelace", date(2010, 1, 1))])
    kyc = run_kyc(application(date_of_birth=date(2010, 1, 1), document=IdentityDocument(DocumentType.PASSPORT, "AB1234560", "GB")), sanctions, NOW)
    assert kyc.status is KycStatus.REJECTED
    assert kyc.reasons == (KycReason.UNDERAGE, KycReason.DOCUMENT_CHECK_DIGIT_MISMATCH, KycReason.SANCTIONS_LIST_MATCH)


def test_sanctions_match_ignores_case_accents_and_hyphens_but_not_birth_date() -> None:
    sanctions = SanctionsList.of([SanctionsEntry("Anaïs Dubois-Lefèvre", date(1982, 11, 5)), SanctionsEntry("Viktor Blackwood")])
    assert sanctions.matches("ANAIS", "dubois lefevre", date(1982, 11, 5))
    assert not sanctions.matches("Anaïs", "Dubois-Lefèvre", date(1983, 11, 5))
    assert sanctions.matches("viktor", "BLACKWOOD", date(2000, 1, 1)), "no listed birth date matches any"


def test_shipped_sanctions_file_loads() -> None:
    listed = CsvSanctionsSource().load()
    assert listed.matches("Ivan Petrovich", "Sidorov", date(1961, 4, 12))


def test_validation_reports_every_bad_field_with_its_path() -> None:
    v = Violations()
    validate_application(
        v,
        application(
            given_name=" ",
            email="not-an-email",
            phone="12345",
            date_of_birth=date(2027, 1, 1),
            document=IdentityDocument(None, "ab12", "Germany"),
            address=Address((), "", "N1", "gb"),
        ),
        NOW.date(),
    )
    with pytest.raises(ValidationFailed) as err:
        v.raise_if_any()
    fields = [violation.field for violation in err.value.violations]
    assert fields == [
        "given_name",
        "email",
        "phone",
        "date_of_birth",
        "document.type",
        "document.number",
        "document.issuing_country_code",
        "address.lines",
        "address.city",
        "address.country_code",
    ]


@pytest.mark.parametrize("poison", ["\u202e", "\x07", "\u200b"], ids=["bidi override", "bell", "zero width space"])
def test_no_text_field_takes_invisible_or_control_characters(poison: str) -> None:
    """Every text an applicant types, the e-mail address included (a pattern once let U+202E and
    BEL through), is refused with its own path when it hides such a character."""
    base = application()
    assert base.address is not None
    variants = {
        "given_name": replace(base, given_name=f"Ada{poison}"),
        "family_name": replace(base, family_name=f"Love{poison}lace"),
        "email": replace(base, email=f"ada{poison}@example.com"),
        "address.lines[0]": replace(base, address=replace(base.address, lines=(f"12 St{poison} James Sq",))),
        "address.city": replace(base, address=replace(base.address, city=f"Lon{poison}don")),
        "address.postal_code": replace(base, address=replace(base.address, postal_code=f"SW1Y{poison}")),
    }
    for path, poisoned in variants.items():
        v = Violations()
        validate_application(v, poisoned, date(2026, 6, 15))
        with pytest.raises(ValidationFailed) as refused:
            v.raise_if_any()
        assert [violation.field for violation in refused.value.violations] == [path]
