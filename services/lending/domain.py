"""Loans. Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from common.errors import PreconditionFailed
from common.four_eyes import needs_two
from common.money import Money
from common.validation import Violations, decimal_fraction
from services.lending.schedule import Installment
from services.lending.servicing import Allocation, InstallmentState, Position

MAX_PRINCIPAL_MINOR = 100_000_000  # 1,000,000.00 in two-digit currencies


class LoanStatus(enum.Enum):
    APPLIED = "APPLIED"
    APPROVED = "APPROVED"
    DISBURSING = "DISBURSING"
    DISBURSED = "DISBURSED"
    DISBURSEMENT_FAILED = "DISBURSEMENT_FAILED"
    AWAITING_SECOND_APPROVAL = "AWAITING_SECOND_APPROVAL"
    PAID_OFF = "PAID_OFF"


class RepaymentKind(enum.Enum):
    REPAYMENT = "REPAYMENT"
    PAYOFF = "PAYOFF"
    COLLECTION = "COLLECTION"


class RepaymentStatus(enum.Enum):
    PENDING = "PENDING"  # the debit is asked for (or its answer was lost); its parts count as paid meanwhile
    POSTED = "POSTED"


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
    state: InstallmentState


@dataclass(frozen=True)
class LoanView:
    """A loan, and where it stands today (from disbursement)."""

    loan: Loan
    position: Position | None


@dataclass(frozen=True)
class Repayment:
    repayment_id: str
    loan_id: str
    kind: RepaymentKind
    status: RepaymentStatus
    amount: Money
    allocation: Allocation
    created_at: datetime


@dataclass(frozen=True)
class Product:
    """The loan product's configuration (products.toml)."""

    late_fee_minor: int  # charged once on an installment found unpaid after its due date


def require_active(loan: Loan) -> None:
    if loan.status is not LoanStatus.DISBURSED:
        raise PreconditionFailed("LOAN_NOT_ACTIVE", f"the loan is {loan.status.value}", {"loan_id": loan.loan_id})


def require_currency(loan: Loan, amount: Money) -> None:
    if amount.currency != loan.principal.currency:
        raise PreconditionFailed(
            "CURRENCY_MISMATCH",
            f"the loan is in {loan.principal.currency}",
            {"loan_id": loan.loan_id, "loan_currency": loan.principal.currency},
        )


def validate_terms(v: Violations, principal: Money | None, term_months: int) -> None:
    if principal is not None:
        v.check(principal.minor <= MAX_PRINCIPAL_MINOR, "principal.amount", "at most 1000000.00")
    v.check(1 <= term_months <= 480, "term_months", "between 1 and 480")


def parse_rate(v: Violations, rate: str, field: str = "annual_interest_rate") -> str:
    """An annual rate as a decimal fraction strictly between 0 and 1, e.g. "0.059"."""
    decimal_fraction(v, rate, field, max_places=10, zero_allowed=False)
    return rate


class ApprovalStep(enum.Enum):
    FIRST = "FIRST"  # APPLIED -> AWAITING_SECOND_APPROVAL: one admin has approved, another must
    FINAL = "FINAL"  # -> APPROVED, with its repayment schedule
    NONE = "NONE"  # already as asked: approved at this rate, or this admin's first approval stands


def approval_step(loan: Loan, approver: str, rate: str, four_eyes_above: Mapping[str, int]) -> ApprovalStep:
    """What `approver`'s approval at `rate` does to `loan` as it stands (decided on the locked row).

    Above its currency's four-eyes amount (a currency without one: always) a loan needs two admins,
    and the applicant is neither of them (the maker is never a checker). Rates are numbers:
    "0.050" is "0.05".
    """
    asked = Decimal(rate)
    if loan.status is LoanStatus.APPROVED and Decimal(loan.annual_rate) == asked:
        return ApprovalStep.NONE
    if loan.status is LoanStatus.AWAITING_SECOND_APPROVAL:
        return _second_approval(loan, approver, asked)
    if loan.status is not LoanStatus.APPLIED:
        raise PreconditionFailed("LOAN_NOT_APPLIED", f"the loan is {loan.status.value}", {"loan_id": loan.loan_id})
    if not needs_two(loan.principal.minor, loan.principal.currency, four_eyes_above):
        return ApprovalStep.FINAL
    _require_not_maker(loan, approver)
    return ApprovalStep.FIRST


def disbursement_starts(loan: Loan) -> bool:
    """Whether a disbursement asked for now starts: True for an APPROVED loan; False for one
    already disbursing or done (its saga reports); LOAN_NOT_APPROVED for any other."""
    if loan.status is LoanStatus.APPROVED:
        return True
    if loan.status in (LoanStatus.DISBURSING, LoanStatus.DISBURSED, LoanStatus.DISBURSEMENT_FAILED):
        return False
    raise PreconditionFailed("LOAN_NOT_APPROVED", f"the loan is {loan.status.value}", {"loan_id": loan.loan_id})


def _second_approval(loan: Loan, approver: str, asked: Decimal) -> ApprovalStep:
    if approver == loan.first_approver:
        return ApprovalStep.NONE  # their approval is recorded; the loan still waits for someone else's
    _require_not_maker(loan, approver)
    if asked != Decimal(loan.annual_rate):
        raise PreconditionFailed(
            "APPROVAL_RATE_DIFFERS",
            f"the first approval was at {loan.annual_rate}; approve at that rate",
            {"loan_id": loan.loan_id, "annual_interest_rate": loan.annual_rate},
        )
    return ApprovalStep.FINAL


def _require_not_maker(loan: Loan, approver: str) -> None:
    if approver == loan.applied_by:
        raise PreconditionFailed(
            "FOUR_EYES_REQUIRED",
            "a loan that needs two approvals is approved by two admins other than its applicant",
            {"loan_id": loan.loan_id},
        )


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


@dataclass(frozen=True)
class LoanRepaid:
    loan_id: str
    customer_id: str
    account_id: str
    repayment_id: str
    amount: Money
    principal: Money
    interest: Money
    late_fees: Money
    outstanding_principal: Money
    at: datetime


@dataclass(frozen=True)
class InstallmentOverdue:
    loan_id: str
    customer_id: str
    number: int
    due_date: date
    owed: Money
    late_fee: Money
    at: datetime


@dataclass(frozen=True)
class LoanPaidOff:
    loan_id: str
    customer_id: str
    at: datetime


LoanEvent = LoanDisbursed | LoanDisbursementFailed | LoanRepaid | InstallmentOverdue | LoanPaidOff


def repaid_event(loan: Loan, r: Repayment, states: list[InstallmentState], at: datetime) -> LoanRepaid:
    """What a posted repayment tells: its parts, and the principal still owed after it."""
    a, currency = r.allocation, r.amount.currency
    outstanding = sum(s.owed_principal for s in states)
    return LoanRepaid(
        loan.loan_id,
        loan.customer_id,
        loan.account_id,
        r.repayment_id,
        r.amount,
        Money(currency, a.principal),
        Money(currency, a.interest),
        Money(currency, a.penalty),
        Money(currency, outstanding),
        at,
    )


def overdue_event(loan: Loan, installment: InstallmentState, late_fee_minor: int, at: datetime) -> InstallmentOverdue:
    """What an installment found unpaid after its due date tells: what it owes with its new late fee."""
    currency = loan.principal.currency
    owed = Money(currency, installment.owed + late_fee_minor)
    return InstallmentOverdue(
        loan.loan_id, loan.customer_id, installment.number, installment.due_date, owed, Money(currency, late_fee_minor), at
    )
