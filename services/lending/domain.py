"""Loans. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from common.money import Money
from common.validation import Violations, decimal_fraction
from services.lending.schedule import Installment

MAX_PRINCIPAL_MINOR = 100_000_000  # 1,000,000.00 in two-digit currencies


class LoanStatus(enum.Enum):
    APPLIED = "APPLIED"
    APPROVED = "APPROVED"
    DISBURSING = "DISBURSING"
    DISBURSED = "DISBURSED"
    DISBURSEMENT_FAILED = "DISBURSEMENT_FAILED"
    AWAITING_SECOND_APPROVAL = "AWAITING_SECOND_APPROVAL"


@dataclass(frozen=True)
class Loan:
    loan_id: str
    customer_id: str
    account_id: str
    principal: Money
    term_months: int
    annual_rate: str
    status: LoanStatus
    saga_id: str
    created_at: datetime
    updated_at: datetime
    installment_minor: int | None = None  # from approval: every installment but the last
    first_due: date | None = None
    applied_by: str = ""  # the user who applied
    first_approver: str = ""  # the admin who approved first, when two are needed


@dataclass(frozen=True)
class ScheduledInstallment:
    """An installment of an approved loan's schedule, with the principal owed once it is paid."""

    installment: Installment
    principal_after_minor: int
    currency: str


def validate_terms(v: Violations, principal: Money | None, term_months: int) -> None:
    if principal is not None:
        v.check(principal.minor <= MAX_PRINCIPAL_MINOR, "principal.amount", "at most 1000000.00")
    v.check(1 <= term_months <= 480, "term_months", "between 1 and 480")


def parse_rate(v: Violations, rate: str, field: str = "annual_interest_rate") -> str:
    """An annual rate as a decimal fraction strictly between 0 and 1, e.g. "0.059"."""
    decimal_fraction(v, rate, field, max_places=10, zero_allowed=False)
    return rate


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoanDisbursed:
    loan_id: str
    customer_id: str
    account_id: str
    principal: Money
    at: datetime


@dataclass(frozen=True)
class LoanDisbursementFailed:
    loan_id: str
    customer_id: str
    reason: str
    at: datetime


LoanEvent = LoanDisbursed | LoanDisbursementFailed
