"""KYC rules and validation of the customer domain, pure functions with hand-computed values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from common.errors import PreconditionFailed, ValidationFailed
from common.grpc.contract_rules import contract_violations
from common.validation import Violations
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from services.customer.adapters import CsvSanctionsSource
from services.customer.domain import (
    Address,
    Application,
    Customer,
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

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


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
    return Application(**fields)


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
    kyc = run_kyc(
        application(date_of_birth=date(2010, 1, 1), document=IdentityDocument(DocumentType.PASSPORT, "AB1234560", "GB")),
        sanctions,
        NOW,
    )
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
    for name in ("given_name", "family_name"):  # the contract's rule, checked before the domain's
        request = cpb.OnboardCustomerRequest(request_id="r", **{name: f"Ada{poison}"})
        assert [v.field for v in contract_violations(request) if v.field == name] == [name]
    variants = {
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


SANCTIONED = date(1961, 4, 12)


@pytest.mark.parametrize(
    ("given", "family", "why"),
    [
        ("Viktor", "Вlackwood", "Cyrillic capital ve for B"),
        ("Vіktor", "Blаckwood", "Cyrillic small i and a"),
        ("Vıktor", "Blackwood", "dotless i"),
        ("Ｖｉｋｔｏｒ", "Blackwood", "fullwidth letters"),
        ("Viktor", "Black-wood", "a hyphen inside the name"),
        ("Viktor", "Blackwood.", "trailing punctuation"),
        ("Blackwood", "Viktor", "given and family names swapped"),
        ("Ιvan Petrovich", "Ѕidorov", "Greek capital iota and Cyrillic dze"),
    ],
)
def test_look_alike_names_are_the_listed_name(given: str, family: str, why: str) -> None:
    """Each evaded the screening before (a homoglyph, a hyphen, punctuation, the order of names)."""
    assert run_kyc(application(given_name=given, family_name=family, date_of_birth=SANCTIONED), SANCTIONS, NOW).reasons == (
        KycReason.SANCTIONS_LIST_MATCH,
    ), why


@pytest.mark.parametrize(
    ("given", "family", "why"),
    [
        ("Viktor J.", "Blackwood", "a middle initial"),
        ("Viktor", "Blackwood Jr", "a suffix"),
        ("Victor", "Blackwood", "one letter off"),
        ("Ivan", "Sidorov", "the patronymic left out"),
    ],
)
def test_near_names_are_left_to_a_person_never_verified(given: str, family: str, why: str) -> None:
    kyc = run_kyc(application(given_name=given, family_name=family, date_of_birth=SANCTIONED), SANCTIONS, NOW)
    assert (kyc.status, kyc.reasons) == (KycStatus.REVIEW, (KycReason.SANCTIONS_POSSIBLE_MATCH,)), why


@pytest.mark.parametrize(
    ("given", "family"), [("Victoria", "Black"), ("Viktor", "Blackburn"), ("Maria", "Smith"), ("Ada", "Lovelace")]
)
def test_other_names_pass(given: str, family: str) -> None:
    assert (
        run_kyc(application(given_name=given, family_name=family, date_of_birth=SANCTIONED), SANCTIONS, NOW).status
        is KycStatus.VERIFIED
    )


def test_a_review_is_decided_once() -> None:
    kyc = run_kyc(application(given_name="Viktor J.", family_name="Blackwood"), SANCTIONS, NOW)
    customer = Customer.onboard("cus_1", application(given_name="Viktor J.", family_name="Blackwood"), kyc)
    assert customer.reviewed(True, NOW).kyc.status is KycStatus.VERIFIED
    rejected = customer.reviewed(False, NOW).kyc
    assert (rejected.status, rejected.reasons[-1]) == (KycStatus.REJECTED, KycReason.REJECTED_ON_REVIEW)
    with pytest.raises(PreconditionFailed):
        customer.reviewed(True, NOW).reviewed(False, NOW)


SANCTIONS = SanctionsList.of(
    [
        SanctionsEntry("Viktor Blackwood"),
        SanctionsEntry("Ivan Petrovich Sidorov", SANCTIONED),
        SanctionsEntry("Maria Elena Contreras", date(1975, 9, 30)),
    ]
)
