"""The annuity schedule: exact cents, level installments, the last one absorbing the rounding."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import PreconditionFailed
from services.lending.schedule import add_months, annuity_schedule, ends_within_the_calendar, level_payment


def test_a_known_loan_matches_the_textbook_annuity() -> None:
    # 10,000.00 at 6 % over 12 months: P·r / (1 - (1 + r)^-n) = 860.664..., r = 0.5 %: 860.66
    schedule = annuity_schedule(1_000_000, Decimal("0.06"), 12, date(2026, 1, 31))
    assert level_payment(1_000_000, Decimal("0.06"), 12) == 86_066
    first, *_, last = schedule
    assert (first.interest_minor, first.principal_minor, first.due_date) == (5_000, 81_066, date(2026, 2, 28))
    assert all(i.total_minor == 86_066 for i in schedule[:-1])
    assert last.due_date == date(2027, 1, 31) and last.total_minor == 86_070  # the rounding ends here
    assert sum(i.principal_minor for i in schedule) == 1_000_000


@settings(max_examples=300, deadline=None)
@given(
    principal=st.integers(1, 100_000_000),
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("0.9999"), places=4),
    term=st.integers(1, 480),
)
def test_every_schedule_repays_the_principal_exactly(principal: int, rate: Decimal, term: int) -> None:
    schedule = annuity_schedule(principal, rate, term, date(2026, 3, 15))
    assert len(schedule) == term and [i.number for i in schedule] == list(range(1, term + 1))
    assert sum(i.principal_minor for i in schedule) == principal
    assert all(i.principal_minor >= 0 and i.interest_minor >= 0 for i in schedule)
    level = level_payment(principal, rate, term)
    # level, except where a month's interest alone is more than the level amount (rates near 100 %
    # over decades: the rounded-down annuity is nearly all interest) or the loan is a few cents a month
    assert all(i.total_minor == max(level, i.interest_minor) for i in schedule[:-1]) or principal < 100 * term
    assert [i.due_date for i in schedule] == sorted({i.due_date for i in schedule})


def test_due_dates_keep_the_day_or_take_the_months_last() -> None:
    assert [add_months(date(2026, 1, 31), k) for k in (1, 2, 13)] == [date(2026, 2, 28), date(2026, 3, 31), date(2027, 2, 28)]


def test_a_months_interest_is_rounded_half_even() -> None:
    """5.00 at 6 % for a month is 0.025: 0.02, not 0.03."""
    [only] = annuity_schedule(500, Decimal("0.06"), 1, date(2026, 1, 1))
    assert (only.interest_minor, only.principal_minor) == (2, 500)


def test_a_loan_of_a_few_cents_ends_early_and_never_repays_more_than_is_owed() -> None:
    """0.10 over a year: a cent a month until nothing is owed, then installments of zero."""
    schedule = annuity_schedule(10, Decimal("0.5"), 12, date(2026, 1, 1))
    assert [i.principal_minor for i in schedule] == [1] * 10 + [0, 0]
    assert all(i.interest_minor == 0 for i in schedule)


@given(st.dates(min_value=date(9000, 1, 1)), st.integers(min_value=1, max_value=12 * 1000))
def test_a_schedule_ends_within_the_calendar_or_is_refused(start: date, months: int) -> None:
    """Whether `months` after `start` is still a date is decided by month arithmetic, exactly at
    the calendar's end: the schedule is made when its last due date exists, refused otherwise."""
    try:
        add_months(start, months)
        exists = True
    except ValueError:  # year 10000: no date
        exists = False
    assert ends_within_the_calendar(start, months) is exists
    if exists:
        assert annuity_schedule(120_000, Decimal("0.05"), months, start)[-1].due_date == add_months(start, months)
    else:
        with pytest.raises(PreconditionFailed) as refused:
            annuity_schedule(120_000, Decimal("0.05"), months, start)
        assert refused.value.reason == "TERM_BEYOND_CALENDAR"


def test_the_calendars_last_month_is_the_last_a_schedule_reaches() -> None:
    assert ends_within_the_calendar(date(9999, 1, 31), 11) and not ends_within_the_calendar(date(9999, 1, 31), 12)
    assert ends_within_the_calendar(date(9998, 12, 1), 12) and not ends_within_the_calendar(date(9998, 12, 1), 13)
