"""Payments and fraud screening. Pure."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime

from common.money import Money
from common.validation import Violations, check_id, check_text

_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")


class PaymentStatus(enum.Enum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


FINAL = frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.REJECTED})


@dataclass(frozen=True)
class Beneficiary:
    account_id: str = ""  # internal
    iban: str = ""  # external
    name: str = ""

    @property
    def external(self) -> bool:
        return bool(self.iban)


@dataclass(frozen=True)
class Payment:
    payment_id: str
    debtor_account_id: str
    beneficiary: Beneficiary
    amount: Money
    reference: str
    status: PaymentStatus
    created_at: datetime
    updated_at: datetime
    failure_reason: str = ""
    hold_id: str = ""
    transfer_id: str = ""

    def moved_to(self, status: PaymentStatus, at: datetime, **changes: str) -> "Payment":
        return replace(self, status=status, updated_at=at, **changes)


@dataclass(frozen=True)
class FraudRules:
    max_amount: Money
    window_seconds: int
    max_payments_per_window: int
    max_amount_per_window: Money


def screen(amount: Money, recent_count: int, recent_total_minor: int, rules: FraudRules) -> str | None:
    """The reason to reject, or None. Recent figures cover the debtor's window, this one excluded."""
    if amount.minor > rules.max_amount.minor:
        return "AMOUNT_LIMIT_EXCEEDED"
    if recent_count + 1 > rules.max_payments_per_window:
        return "VELOCITY_COUNT_EXCEEDED"
    if recent_total_minor + amount.minor > rules.max_amount_per_window.minor:
        return "VELOCITY_AMOUNT_EXCEEDED"
    return None


def validate_beneficiary(v: Violations, b: Beneficiary, debtor_account_id: str) -> None:
    if b.external:
        v.check(bool(_IBAN_SHAPE.fullmatch(b.iban)), "external.iban", "an IBAN in capitals without spaces, e.g. DE89370400440532013000")
        check_text(v, b.name, "external.name", max_len=70)
    elif b.account_id:
        check_id(v, b.account_id, "internal.account_id", "acc")
        v.check(b.account_id != debtor_account_id, "internal.account_id", "must differ from the debtor account")
    else:
        v.add("beneficiary", "required: internal (an account of this bank) or external (an IBAN)")
