"""Customers and the KYC rules. Pure: no I/O, no gRPC, no clock (today is passed in)."""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from confusable_homoglyphs import confusables
from email_validator import EmailNotValidError
from email_validator import validate_email as validate_email_address
from rapidfuzz import fuzz

from common.errors import AlreadyExists, PreconditionFailed
from common.validation import Violations, check_text

CUSTOMER_ID_PREFIX = "cus"
LEGAL_AGE = 18
_DOCUMENT = re.compile(r"[A-Z]{2}[0-9]{7}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_PHONE = re.compile(r"\+[1-9][0-9]{6,14}")
_ICAO_WEIGHTS = (7, 3, 1)
UPDATABLE_FIELDS = frozenset({"email", "phone", "address"})


class KycStatus(enum.Enum):
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"
    REVIEW = "REVIEW"  # a possible sanctions match: an admin clears or rejects it


class KycReason(enum.Enum):
    UNDERAGE = "UNDERAGE"
    DOCUMENT_CHECK_DIGIT_MISMATCH = "DOCUMENT_CHECK_DIGIT_MISMATCH"
    SANCTIONS_LIST_MATCH = "SANCTIONS_LIST_MATCH"
    SANCTIONS_POSSIBLE_MATCH = "SANCTIONS_POSSIBLE_MATCH"
    REJECTED_ON_REVIEW = "REJECTED_ON_REVIEW"


class DocumentType(enum.Enum):
    PASSPORT = "PASSPORT"
    NATIONAL_ID = "NATIONAL_ID"


@dataclass(frozen=True)
class IdentityDocument:
    type: DocumentType | None
    number: str
    issuing_country_code: str


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...]
    city: str
    postal_code: str
    country_code: str


@dataclass(frozen=True)
class Kyc:
    status: KycStatus
    reasons: tuple[KycReason, ...]
    checked_at: datetime


@dataclass(frozen=True)
class SanctionsEntry:
    """One listed person; a missing birth date matches any birth date."""

    full_name: str
    date_of_birth: date | None = None


@dataclass(frozen=True)
class Application:
    """A validated onboarding application."""

    given_name: str
    family_name: str
    email: str
    phone: str
    date_of_birth: date | None
    document: IdentityDocument | None
    address: Address | None


@dataclass(frozen=True)
class ContactChange:
    """A validated change of contact data; only the fields in `fields` apply."""

    fields: frozenset[str]
    email: str = ""
    phone: str = ""
    address: Address | None = None


@dataclass(frozen=True)
class Customer:
    customer_id: str
    given_name: str
    family_name: str
    email: str
    phone: str
    date_of_birth: date
    document: IdentityDocument
    address: Address
    kyc: Kyc
    created_at: datetime
    updated_at: datetime
    version: int = 1
    relationship_manager_id: str = ""

    @classmethod
    def onboard(cls, customer_id: str, application: Application, kyc: Kyc) -> Customer:
        birth, document, address = _complete(application)
        return cls(
            customer_id=customer_id,
            given_name=application.given_name,
            family_name=application.family_name,
            email=application.email,
            phone=application.phone,
            date_of_birth=birth,
            document=document,
            address=address,
            kyc=kyc,
            created_at=kyc.checked_at,
            updated_at=kyc.checked_at,
        )

    def reviewed(self, clear: bool, at: datetime) -> Customer:
        """The customer once an admin decided their KYC in review: verified, or rejected."""
        if self.kyc.status is not KycStatus.REVIEW:
            raise PreconditionFailed(
                "KYC_NOT_IN_REVIEW",
                f"the KYC is {self.kyc.status.value}, not in review",
                {"customer_id": self.customer_id, "kyc_status": self.kyc.status.value},
            )
        kyc = (
            Kyc(KycStatus.VERIFIED, (), at)
            if clear
            else Kyc(KycStatus.REJECTED, (*self.kyc.reasons, KycReason.REJECTED_ON_REVIEW), at)
        )
        return replace(self, kyc=kyc, updated_at=at, version=self.version + 1)

    def with_relationship_manager(self, user_id: str, at: datetime) -> Customer:
        return replace(self, relationship_manager_id=user_id, updated_at=at, version=self.version + 1)

    def masked(self) -> Customer:
        """The customer as seen by someone who may not read personal data."""
        return replace(
            self,
            date_of_birth=date(1, 1, 1),
            document=replace(self.document, number=mask(self.document.number)),
            address=Address(("***",), "***", "***", self.address.country_code),
        )

    def with_contact(self, change: ContactChange, at: datetime) -> Customer:
        """The customer after `change`, one version later."""
        return replace(
            self,
            email=change.email if "email" in change.fields else self.email,
            phone=change.phone if "phone" in change.fields else self.phone,
            address=change.address if "address" in change.fields and change.address else self.address,
            updated_at=at,
            version=self.version + 1,
        )


def _complete(app: Application) -> tuple[date, IdentityDocument, Address]:
    """The parts validation guarantees; calling rules on an unvalidated application is a bug."""
    if app.date_of_birth is None or app.document is None or app.address is None:
        raise ValueError("application used before validate_application")
    return app.date_of_birth, app.document, app.address


def mask(value: str, visible: int = 2) -> str:
    """All but the last `visible` characters hidden."""
    return "*" * max(len(value) - visible, 0) + value[-visible:]


# --- validation -------------------------------------------------------------------------------


def validate_email(v: Violations, value: str, field: str = "email") -> None:
    """An address by RFC 5321/6531 as email-validator reads it (no DNS): it refuses control,
    bidi and other unsafe characters, which a hand-written pattern let through."""
    try:
        validate_email_address(value, check_deliverability=False)
    except EmailNotValidError as invalid:
        v.add(field, f"required: an email address like name@example.com ({invalid})")


def validate_phone(v: Violations, value: str, field: str = "phone") -> None:
    if value:
        v.check(bool(_PHONE.fullmatch(value)), field, "must be in E.164 form, e.g. +4915112345678")


def validate_birth_date(v: Violations, value: date | None, today: date, field: str = "date_of_birth") -> None:
    if value is None:
        v.add(field, "required: a valid calendar date")
        return
    v.check(date(1900, 1, 1) <= value <= today, field, "must be between 1900-01-01 and today")


def validate_document(v: Violations, doc: IdentityDocument | None, field: str = "document") -> None:
    if doc is None:
        v.add(field, "required")
        return
    v.check(doc.type is not None, f"{field}.type", "required: PASSPORT or NATIONAL_ID")
    v.check(
        bool(_DOCUMENT.fullmatch(doc.number)),
        f"{field}.number",
        "must be two capital letters and seven digits (the last is the check digit), e.g. AB1234564",
    )
    v.check(
        bool(_COUNTRY.fullmatch(doc.issuing_country_code)),
        f"{field}.issuing_country_code",
        "required: ISO 3166-1 alpha-2 code, e.g. DE",
    )


def validate_address(v: Violations, address: Address | None, field: str = "address") -> None:
    if address is None:
        v.add(field, "required")
        return
    v.check(1 <= len(address.lines) <= 3, f"{field}.lines", "1 to 3 lines required")
    for i, line in enumerate(address.lines):
        check_text(v, line, f"{field}.lines[{i}]", max_len=100)
    check_text(v, address.city, f"{field}.city", max_len=100)
    check_text(v, address.postal_code, f"{field}.postal_code", max_len=16)
    v.check(bool(_COUNTRY.fullmatch(address.country_code)), f"{field}.country_code", "required: ISO 3166-1 alpha-2 code, e.g. DE")


def validate_application(v: Violations, app: Application, today: date) -> None:
    validate_email(v, app.email)
    validate_phone(v, app.phone)
    validate_birth_date(v, app.date_of_birth, today)
    validate_document(v, app.document)
    validate_address(v, app.address)


def validate_contact_change(v: Violations, change: ContactChange, field: str = "customer") -> None:
    unknown = change.fields - UPDATABLE_FIELDS
    v.check(bool(change.fields), "update_mask", f"required: one or more of {', '.join(sorted(UPDATABLE_FIELDS))}")
    v.check(
        not unknown, "update_mask", f"not updatable: {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(UPDATABLE_FIELDS))}"
    )
    if "email" in change.fields:
        validate_email(v, change.email, f"{field}.email")
    if "phone" in change.fields:
        validate_phone(v, change.phone, f"{field}.phone")
    if "address" in change.fields:
        validate_address(v, change.address, f"{field}.address")


# --- KYC rules --------------------------------------------------------------------------------


def age_on(birth: date, day: date) -> int:
    """Completed years; someone born on 29 February comes of age on 1 March in common years."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _icao_value(char: str) -> int:
    return int(char) if char.isdigit() else ord(char) - ord("A") + 10


def check_digit(body: str) -> int:
    """ICAO 9303 check digit: weights 7, 3, 1 repeating, sum modulo 10."""
    return sum(_icao_value(c) * _ICAO_WEIGHTS[i % 3] for i, c in enumerate(body)) % 10


def has_valid_check_digit(number: str) -> bool:
    return check_digit(number[:-1]) == int(number[-1])


def _latin_lookalike(char: str) -> str:
    """The Latin letter `char` is drawn like (Cyrillic capital ve or small a, Greek capital iota,
    dotless i), of the same case, from Unicode's confusables data (UTS #39) as confusable_homoglyphs
    ships it; `char` itself when there is none. A capital with no Latin capital twin is looked at as
    a small letter (Greek capital iota is drawn like l among the small letters, like i once folded)."""
    if char.isascii():
        return _ASCII_LOOKALIKES.get(char, char)
    latin = [g for g in (str(x["c"]) for x in confusables.confusables_data.get(char, ())) if g.isascii() and g.isalpha()]
    if char.isupper():
        capitals = [g for g in latin if g.isupper()]
        return capitals[0] if capitals else _latin_lookalike(char.lower()) if char.lower() != char else char
    return ([g for g in latin if g.islower()] or [g.lower() for g in latin] or [char])[0]


_ASCII_LOOKALIKES = {"0": "o", "1": "l", "|": "l"}  # UTS #39 prototypes within ASCII itself


def name_skeleton(name: str) -> str:
    """A name as it looks, for comparing with the sanctions list (the skeleton of UTS #39, and
    more forgiving): compatibility forms, accents and case dropped, letters of other scripts that
    look Latin made Latin, punctuation inside or around a word dropped ("Black-wood",
    "Blackwood."), words separated by single spaces."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    latin = unicodedata.normalize("NFKD", "".join(_latin_lookalike(c) for c in bare)).casefold()
    return " ".join("".join(c for c in word if c.isalnum()) for word in latin.split() if any(c.isalnum() for c in word))


normalize_name = name_skeleton  # the name the list is indexed by


class SanctionsHit(enum.Enum):
    NONE = 0
    POSSIBLE = 1  # a near match: a person decides
    EXACT = 2


NEAR = 88  # rapidfuzz score (0..100) from which two names are taken for possibly the same person


def _similarity(applicant: str, listed: str) -> SanctionsHit:
    """EXACT when the skeletons have the same words in any order (swapped given and family names)
    or the same letters; POSSIBLE when they are alike (a typo, a middle initial, a suffix, a dropped
    patronymic: the listed family name and one more listed word are found among the applicant's)."""
    words, listed_words = applicant.split(), listed.split()
    if sorted(words) == sorted(listed_words) or applicant.replace(" ", "") == listed.replace(" ", ""):
        return SanctionsHit.EXACT
    if fuzz.token_sort_ratio(applicant, listed) >= NEAR:
        return SanctionsHit.POSSIBLE
    found = [w for w in listed_words if any(fuzz.ratio(w, mine) >= NEAR for mine in words)]
    enough = len(found) >= min(2, len(listed_words)) and listed_words[-1] in found
    return SanctionsHit.POSSIBLE if enough else SanctionsHit.NONE


@dataclass(frozen=True)
class SanctionsList:
    """The sanctions list, by the skeleton of each listed name."""

    entries: dict[str, tuple[SanctionsEntry, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[SanctionsEntry]) -> SanctionsList:
        index: dict[str, list[SanctionsEntry]] = {}
        for entry in entries:
            index.setdefault(name_skeleton(entry.full_name), []).append(entry)
        return cls({name: tuple(found) for name, found in index.items()})

    def screen(self, given_name: str, family_name: str, birth: date) -> SanctionsHit:
        """The strongest hit among the listed people born that day (or with no birth date listed)."""
        applicant = name_skeleton(f"{given_name} {family_name}")
        best = SanctionsHit.NONE
        for listed, people in self.entries.items():
            if any(entry.date_of_birth in (None, birth) for entry in people):
                best = max(best, _similarity(applicant, listed), key=lambda hit: hit.value)
        return best

    def matches(self, given_name: str, family_name: str, birth: date) -> bool:
        return self.screen(given_name, family_name, birth) is SanctionsHit.EXACT


def require_new_document(holder: str | None) -> None:
    """One customer per identity document: `holder` is the customer onboarded with it, if any."""
    if holder is not None:
        raise AlreadyExists(
            "CUSTOMER_ALREADY_EXISTS", "a customer with this identity document is already onboarded", {"customer_id": holder}
        )


def version_mismatch(customer_id: str, current: int, expected: int) -> PreconditionFailed:
    """A change pinned to a version the customer is not at."""
    return PreconditionFailed(
        "VERSION_MISMATCH",
        f"customer is at version {current}, not {expected}",
        {"customer_id": customer_id, "current_version": str(current)},
    )


def run_kyc(app: Application, sanctions: SanctionsList, now: datetime) -> Kyc:
    """Every rule runs, so a rejection lists all its reasons."""
    birth, document, _ = _complete(app)
    reasons = []
    if age_on(birth, now.date()) < LEGAL_AGE:
        reasons.append(KycReason.UNDERAGE)
    if not has_valid_check_digit(document.number):
        reasons.append(KycReason.DOCUMENT_CHECK_DIGIT_MISMATCH)
    hit = sanctions.screen(app.given_name, app.family_name, birth)
    if hit is SanctionsHit.EXACT:
        reasons.append(KycReason.SANCTIONS_LIST_MATCH)
    if reasons:
        return Kyc(status=KycStatus.REJECTED, reasons=tuple(reasons), checked_at=now)
    if hit is SanctionsHit.POSSIBLE:  # never a silent VERIFIED: a person looks at it
        return Kyc(status=KycStatus.REVIEW, reasons=(KycReason.SANCTIONS_POSSIBLE_MATCH,), checked_at=now)
    return Kyc(status=KycStatus.VERIFIED, reasons=(), checked_at=now)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerOnboarded:
    customer_id: str
    kyc_status: KycStatus
    at: datetime


@dataclass(frozen=True)
class CustomerUpdated:
    customer_id: str
    version: int
    changed_fields: tuple[str, ...]
    at: datetime


@dataclass(frozen=True)
class CustomerKycReviewed:
    customer_id: str
    kyc_status: KycStatus
    at: datetime


CustomerEvent = CustomerOnboarded | CustomerUpdated | CustomerKycReviewed
