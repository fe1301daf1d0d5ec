"""A loan's terms and the states it may be paid in (services/lending/domain.py): the bounds of a
principal, a term and a rate, an active loan, a payment in the loan's currency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from common.errors import PreconditionFailed, ValidationFailed
from common.money import Money
from common.validation import Violations
from services.lending.domain import (
    ApprovalStep,
    Loan,
    LoanStatus,
    approval_step,
    disbursement_starts,
    overdue_event,
    parse_rate,
    require_active,
    require_currency,
    validate_terms,
)
from services.lending.servicing import InstallmentState

AT = datetime(2026, 6, 15, 12, tzinfo=UTC)


def _broken(check: Callable[[Violations], object]) -> list[str]:
    """The fields a check run on fresh Violations broke."""
    v = Violations()
    check(v)
    if not v:
        return []
    with pytest.raises(ValidationFailed) as failed:
        v.raise_if_any()
    return [f.field for f in failed.value.violations]


@pytest.mark.parametrize(("minor", "broken"), [(100_000_000, []), (100_000_001, ["principal.amount"])])
def test_a_principal_is_at_most_a_million(minor: int, broken: list[str]) -> None:
    assert _broken(lambda v: validate_terms(v, Money("EUR", minor), 12)) == broken


@pytest.mark.parametrize(("term", "broken"), [(1, []), (480, []), (0, ["term_months"]), (481, ["term_months"])])
def test_a_term_is_one_month_to_forty_years(term: int, broken: list[str]) -> None:
    assert _broken(lambda v: validate_terms(v, Money("EUR", 100), term)) == broken
    assert _broken(lambda v: validate_terms(v, None, term)) == broken, "the term is checked when the principal is not"


@pytest.mark.parametrize(
    ("rate", "broken"),
    [("0.059", []), ("0.0000000001", []), ("0.00000000001", ["rate"]), ("0", ["rate"]), ("1", ["rate"]), ("1e-3", ["rate"])],
)
def test_a_rate_is_a_fraction_above_zero_with_at_most_ten_decimals(rate: str, broken: list[str]) -> None:
    assert _broken(lambda v: parse_rate(v, rate, "rate")) == broken


def _loan(status: LoanStatus) -> Loan:
    return Loan("lon_1", "cus_ada", "acc_ada", Money("EUR", 500_000), 24, "0.05", status, "sag-lon_1", AT, AT)


@pytest.mark.parametrize("status", [s for s in LoanStatus if s is not LoanStatus.DISBURSED])
def test_only_a_disbursed_loan_is_active(status: LoanStatus) -> None:
    require_active(_loan(LoanStatus.DISBURSED))
    with pytest.raises(PreconditionFailed) as refused:
        require_active(_loan(status))
    assert refused.value.reason == "LOAN_NOT_ACTIVE"


def test_a_loan_is_paid_in_its_own_currency() -> None:
    require_currency(_loan(LoanStatus.DISBURSED), Money("EUR", 1))
    with pytest.raises(PreconditionFailed) as refused:
        require_currency(_loan(LoanStatus.DISBURSED), Money("USD", 1))
    assert (refused.value.reason, refused.value.metadata["loan_currency"]) == ("CURRENCY_MISMATCH", "EUR")


# --- approval: four eyes above the currency's amount, and always where a currency has none -------


def _applied(minor: int, currency: str = "EUR") -> Loan:
    return replace(_loan(LoanStatus.APPLIED), principal=Money(currency, minor), applied_by="usr_maker")


@pytest.mark.parametrize(
    ("minor", "currency", "approver", "step"),
    [
        (500_000, "EUR", "usr_admin", ApprovalStep.FINAL),  # at the amount: one admin
        (500_000, "EUR", "usr_maker", ApprovalStep.FINAL),  # ... the applicant's approval is no second pair of eyes
        (500_001, "EUR", "usr_admin", ApprovalStep.FIRST),  # above it: a first approval
        (1, "USD", "usr_admin", ApprovalStep.FIRST),  # a currency without an amount: always two
    ],
)
def test_a_loan_above_its_currencys_amount_needs_two_admins(minor: int, currency: str, approver: str, step: ApprovalStep) -> None:
    assert approval_step(_applied(minor, currency), approver, "0.05", {"EUR": 500_000}) is step


@pytest.mark.parametrize("currency", ["EUR", "USD"])
def test_the_applicant_never_gives_the_first_of_two_approvals(currency: str) -> None:
    with pytest.raises(PreconditionFailed) as refused:
        approval_step(_applied(900_000, currency), "usr_maker", "0.05", {"EUR": 500_000})
    assert refused.value.reason == "FOUR_EYES_REQUIRED"


@pytest.mark.parametrize("status", list(LoanStatus))
def test_a_disbursement_starts_from_approved_only_and_leaves_one_under_way_as_it_is(status: LoanStatus) -> None:
    loan = _loan(status)
    if status is LoanStatus.APPROVED:
        assert disbursement_starts(loan) is True
    elif status in (LoanStatus.DISBURSING, LoanStatus.DISBURSED, LoanStatus.DISBURSEMENT_FAILED):
        assert disbursement_starts(loan) is False, "its saga reports; the loan is not moved back"
    else:
        with pytest.raises(PreconditionFailed) as refused:
            disbursement_starts(loan)
        assert refused.value.reason == "LOAN_NOT_APPROVED"


def test_an_overdue_installment_owes_what_it_owed_and_its_new_late_fee() -> None:
    due = InstallmentState(3, date(2026, 6, 1), 40_000, 2_000, None, 0, 10_000, 2_000, 0, 0, None)
    event = overdue_event(_loan(LoanStatus.DISBURSED), due, 1_500, AT)
    assert (event.number, event.due_date) == (3, date(2026, 6, 1))
    assert (event.owed, event.late_fee) == (Money("EUR", 30_000 + 1_500), Money("EUR", 1_500))
