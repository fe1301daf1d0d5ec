"""The servicing rules of services/lending/servicing.py: allocation (late fee, interest, principal,
oldest due first, then ahead), the payoff (30/360 accrual, later interest waived), collection and
arrears; and, over random histories of payments and days, that no money is created or lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import PreconditionFailed
from services.lending.schedule import annuity_schedule
from services.lending.servicing import (
    InstallmentState,
    Part,
    allocate,
    days_30_360,
    due_by,
    newly_overdue,
    payoff,
    position,
)

START = date(2026, 3, 1)


def _loan(principal: int = 120_000, rate: str = "0.06", months: int = 12, start: date = START) -> list[InstallmentState]:
    return [
        InstallmentState(i.number, i.due_date, i.principal_minor, i.interest_minor, i.period_start)
        for i in annuity_schedule(principal, Decimal(rate), months, start)
    ]


def _paid(states: list[InstallmentState], parts: tuple[Part, ...]) -> list[InstallmentState]:
    by_number = {p.number: p for p in parts}
    return [s.with_part(by_number[s.number]) if s.number in by_number else s for s in states]


def test_a_payment_settles_the_interest_due_before_principal() -> None:
    loan = _loan()  # the first: 6.00 interest, 97.27 principal, due 1 April
    assert allocate(loan, 5_000, date(2026, 4, 1)).parts == (Part(1, 0, 600, 4_400),)


def test_the_oldest_installment_is_settled_first_late_fee_first_then_the_rest_pays_ahead() -> None:
    loan = _loan()
    loan[0] = replace(loan[0], penalty=1_500, overdue_since=date(2026, 4, 1))
    parts = allocate(loan, 1_500 + 10_327 + 700, date(2026, 4, 10)).parts
    assert parts == (Part(1, 1_500, 600, 9_727), Part(2, 0, 551, 149)), "fee, interest, principal; then the next, interest first"
    paid = _paid(loan, parts)
    assert paid[0].settled and paid[0].paid_penalty == 1_500 and paid[1].owed == loan[1].owed - 700


def test_on_its_due_date_an_installment_is_settled_once_then_the_next_is_paid_ahead() -> None:
    parts = allocate(_loan(), 10_327 + 700, date(2026, 4, 1)).parts
    assert parts == (Part(1, 0, 600, 9_727), Part(2, 0, 551, 149))


def test_a_payment_short_of_the_late_fee_pays_the_fee_and_nothing_more() -> None:
    loan = _loan()
    loan[0] = replace(loan[0], penalty=1_500, overdue_since=date(2026, 4, 1))
    assert allocate(loan, 1_000, date(2026, 4, 10)).parts == (Part(1, 1_000, 0, 0),)
    assert allocate(loan, 1_800, date(2026, 4, 10)).parts == (Part(1, 1_500, 300, 0),), "then the interest, in part"


def test_more_than_the_payoff_is_refused_with_the_payoff_amount() -> None:
    loan = _loan()
    quote = payoff(loan, date(2026, 3, 16)).total
    with pytest.raises(PreconditionFailed) as refused:
        allocate(loan, quote + 1, date(2026, 3, 16))
    assert refused.value.reason == "AMOUNT_EXCEEDS_PAYOFF" and refused.value.metadata["payoff_minor"] == str(quote)


def test_the_payoff_accrues_the_current_period_by_30_360_and_waives_the_rest() -> None:
    loan = _loan()
    quote = payoff(loan, date(2026, 3, 16))  # 15 of 30 days: half of 6.00
    assert (quote.principal, quote.interest, quote.penalty) == (120_000, 300, 0)
    scheduled_interest = sum(s.interest for s in loan)
    assert sum(p.waived_interest for p in quote.parts) == scheduled_interest - 300
    assert all(s.settled for s in _paid(loan, quote.parts)), "the payoff leaves nothing owed"
    assert payoff(loan, date(2026, 4, 1)).interest == 600, "on the due date the whole period has accrued"


def test_the_payoffs_accrued_interest_is_rounded_half_even() -> None:
    """6.01 of interest for 15 of 30 days is 3.005: 3.00, not 3.01."""
    period = InstallmentState(1, date(2026, 4, 1), 10_000, 601, date(2026, 3, 1))
    assert payoff([period], date(2026, 3, 16)).interest == 300


def test_a_period_accrues_at_most_its_own_interest() -> None:
    """The period ending 31 March began on 28 February: 32 days by 30E/360 on 30 March, yet a
    period never accrues more than its 30 days."""
    period = InstallmentState(1, date(2026, 3, 31), 10_000, 600, date(2026, 2, 28))
    assert days_30_360(date(2026, 2, 28), date(2026, 3, 30)) == 32
    assert payoff([period], date(2026, 3, 30)).interest == 600


def test_only_the_current_period_accrues_even_where_the_next_has_begun() -> None:
    """Due 31 January and 28 February: on 30 January a month before 28 February has begun, yet the
    payoff accrues the period due 31 January alone."""
    quote = payoff(_loan(start=date(2025, 12, 31)), date(2026, 1, 30))
    assert [(p.number, p.interest) for p in quote.parts[:2]] == [(1, 600), (2, 0)]


def test_a_loan_paid_off_on_the_31st_it_was_disbursed_owes_no_interest() -> None:
    """Its first period runs from 31 March, the day its schedule starts."""
    quote = payoff(_loan(start=date(2026, 3, 31)), date(2026, 3, 31))
    assert (quote.principal, quote.interest) == (120_000, 0)


def test_a_loan_paid_off_on_its_first_due_date_owes_that_periods_interest_and_none_of_the_next() -> None:
    """1200.00 at 6% from 31 December, paid off on 31 January: 31 Dec -> 31 Jan is 30 days, 6.00.
    The next period (due 28 February) begins on 31 January, not on 28 January, a month before its
    due date: nothing of it has accrued."""
    quote = payoff(_loan(start=date(2025, 12, 31)), date(2026, 1, 31))
    assert [(p.number, p.interest) for p in quote.parts[:2]] == [(1, 600), (2, 0)]
    assert (quote.interest, quote.principal) == (600, 120_000)


def test_the_period_after_a_month_end_accrues_from_the_previous_due_date() -> None:
    """Due 31 January then 28 February: on 14 February, 14 days of the second period's 5.51."""
    quote = payoff(_loan(start=date(2025, 12, 31)), date(2026, 2, 14))
    assert [(p.number, p.interest) for p in quote.parts[:2]] == [(1, 600), (2, 257)]  # 551 * 14/30 = 257.13


def test_a_first_period_not_recorded_is_taken_as_the_month_before_its_due_date() -> None:
    """Schedules written before period starts were kept (migration 0006 fills the later ones)."""
    period = InstallmentState(1, date(2026, 4, 1), 10_000, 600, None)
    assert period.starts_on == date(2026, 3, 1) and payoff([period], date(2026, 3, 16)).interest == 300


def _half_even(value: Fraction) -> int:
    return round(value)  # Fraction rounds half to even


@settings(max_examples=400, deadline=None)
@given(
    principal=st.integers(min_value=1, max_value=10**11),
    months=st.integers(min_value=1, max_value=48),
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("0.5"), places=4),
    start=st.one_of(
        st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
        st.builds(date, st.integers(2000, 2090), st.sampled_from([1, 3, 5, 7, 8, 10, 12]), st.integers(28, 31)),
    ),
    period=st.integers(min_value=0, max_value=48),
    after=st.integers(min_value=0, max_value=31),
)
def test_a_payoff_on_any_day_accrues_only_from_the_previous_due_date(
    principal: int, months: int, rate: Decimal, start: date, period: int, after: int
) -> None:
    """Paid off on any day of the schedule: the interest of the installments due, and of the current
    period only what accrued from the previous due date (or the start) to today, by 30E/360 over 30
    days, rounded half-even once: never negative, never more than the period's own interest."""
    loan = _loan(principal, str(rate), months, start)
    anchor = start if period == 0 else loan[min(period, months) - 1].due_date  # days after the start or a due date
    today = min(anchor + timedelta(days=after), loan[-1].due_date)
    due = [s for s in loan if s.due_date <= today]
    later = [s for s in loan if s.due_date > today]
    accrued = 0
    if later:
        previous = max([start, *(s.due_date for s in due)])
        days = min(30, days_30_360(previous, today))
        assert 0 <= days <= 30
        accrued = _half_even(Fraction(later[0].interest * days, 30))
        assert 0 <= accrued <= later[0].interest
    quote = payoff(loan, today)
    assert quote.interest == sum(s.interest for s in due) + accrued
    assert quote.principal == principal and quote.penalty == 0
    assert all(p.interest >= 0 and p.waived_interest >= 0 for p in quote.parts)
    assert all(isinstance(p.interest, int) for p in quote.parts)
    if later and today in (start, *(s.due_date for s in due)):
        assert accrued == 0, "on a due date (or the start) the next period has accrued nothing"


def test_30_360_counts_every_month_as_30_days() -> None:
    assert days_30_360(date(2026, 2, 1), date(2026, 3, 1)) == 30
    assert days_30_360(date(2026, 1, 31), date(2026, 2, 28)) == 28
    assert days_30_360(date(2026, 3, 1), date(2026, 3, 16)) == 15


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2026, 1, 1), date(2026, 1, 31), 29),  # the 31st counts as the 30th
        (date(2026, 1, 31), date(2026, 3, 1), 31),  # at the start too
        (date(2026, 4, 1), date(2026, 4, 30), 29),
        (date(2025, 12, 15), date(2026, 1, 15), 30),  # a year is 360 days
        (date(2025, 3, 1), date(2026, 3, 1), 360),
    ],
)
def test_30e_360_counts_the_31st_as_the_30th(start: date, end: date, days: int) -> None:
    assert days_30_360(start, end) == days


def test_collection_takes_everything_due_and_what_is_unpaid_becomes_overdue_once() -> None:
    loan = _loan()
    day = date(2026, 5, 1)
    assert due_by(loan, day).total == loan[0].owed + loan[1].owed
    assert [s.number for s in newly_overdue(loan, day)] == [1, 2]
    marked = [replace(s, overdue_since=s.due_date, penalty=1_500) if s.number <= 2 else s for s in loan]
    assert newly_overdue(marked, date(2026, 5, 2)) == [], "the late fee is charged once"
    where = position(marked, date(2026, 5, 11))
    assert (where.days_in_arrears, where.overdue_minor) == (40, loan[0].owed + loan[1].owed + 3_000)
    assert (where.next_due_date, where.outstanding_principal) == (date(2026, 6, 1), 120_000)
    on_a_due_date = position(loan, date(2026, 4, 1))
    assert (on_a_due_date.next_due_date, on_a_due_date.days_in_arrears) == (date(2026, 5, 1), 0), "due today is not next"


@settings(max_examples=200, deadline=None)
@given(
    principal=st.integers(min_value=100, max_value=100_000_000),
    months=st.integers(min_value=1, max_value=60),
    rate=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.4"), places=4),
    history=st.lists(st.tuples(st.integers(min_value=0, max_value=70), st.integers(min_value=1, max_value=10**8)), max_size=12),
)
def test_no_history_of_payments_creates_or_loses_money(
    principal: int, months: int, rate: Decimal, history: list[tuple[int, int]]
) -> None:
    """Payments on random days never take more than the payoff, every part is positive, the
    principal repaid never exceeds the principal lent, and a payoff at the end settles all."""
    loan = [
        InstallmentState(i.number, i.due_date, i.principal_minor, i.interest_minor, i.period_start)
        for i in annuity_schedule(principal, rate, months, START)
    ]
    today, taken = START, 0
    for days, amount in history:
        today += timedelta(days=days)
        limit = payoff(loan, today).total
        if amount > limit:
            with pytest.raises(PreconditionFailed):
                allocate(loan, amount, today)
            amount = limit
        if not amount:
            continue
        allocation = allocate(loan, amount, today)
        assert allocation.total == amount and all(min(p.penalty, p.interest, p.principal) >= 0 for p in allocation.parts)
        loan, taken = _paid(loan, allocation.parts), taken + amount
        assert all(s.owed >= 0 for s in loan)
    assert sum(s.paid_principal for s in loan) <= principal
    final = payoff(loan, today)
    loan = _paid(loan, final.parts)
    assert all(s.settled for s in loan) and sum(s.paid_principal for s in loan) == principal
    assert taken + final.total == sum(s.paid_principal + s.paid_interest for s in loan)
