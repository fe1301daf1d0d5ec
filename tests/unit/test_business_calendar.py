"""The bank's day, decided: business calendars per currency (the `holidays` library's), which
dates are due, and what closing one does. Histories of closes over a fake clock, generated."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import Settings
from services.interest.domain import (
    COLLECTION,
    FEES,
    INTEREST,
    BusinessCalendar,
    business_calendar,
    close_plan,
    closing_through,
    due_dates,
    next_step,
)

EUR = business_calendar("EUR", "ECB")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
START = datetime(2025, 12, 1, 21, 0, tzinfo=UTC)


def test_target2_closes_on_weekends_and_its_holidays() -> None:
    assert not EUR.is_business_date(date(2026, 12, 25))  # Christmas Day
    assert not EUR.is_business_date(date(2026, 12, 26))  # Christmas Holiday (a Saturday too)
    assert not EUR.is_business_date(date(2026, 4, 3))  # Good Friday
    assert not EUR.is_business_date(date(2026, 4, 6))  # Easter Monday
    assert not EUR.is_business_date(date(2026, 5, 1))  # Labour Day
    assert not EUR.is_business_date(date(2026, 1, 10))  # a Saturday
    assert EUR.is_business_date(date(2026, 12, 31))  # TARGET2 is open on New Year's Eve
    assert EUR.previous(date(2026, 4, 7)) == date(2026, 4, 2)


def test_every_configured_currency_has_a_calendar() -> None:
    for currency, market in Settings().business_calendars.items():
        calendar = business_calendar(currency, market)
        assert not calendar.is_business_date(date(2026, 1, 1)), currency  # New Year everywhere


def test_a_market_is_told_from_a_country() -> None:
    assert not business_calendar("USD", "NYSE").is_business_date(date(2026, 7, 3))  # Independence Day observed
    assert not business_calendar("SEK", "SE").is_business_date(date(2026, 5, 14))  # Ascension Day (a country's)


def test_a_date_is_closed_from_the_close_time_in_the_banks_zone() -> None:
    close_at = time(22, 0)
    assert closing_through(datetime(2026, 3, 2, 20, 59, tzinfo=UTC), AMSTERDAM, close_at) == date(2026, 3, 1)
    assert closing_through(datetime(2026, 3, 2, 21, 0, tzinfo=UTC), AMSTERDAM, close_at) == date(2026, 3, 2)
    assert closing_through(datetime(2026, 7, 2, 20, 0, tzinfo=UTC), AMSTERDAM, close_at) == date(2026, 7, 2)  # CEST


def test_missed_dates_are_caught_up_in_order_skipping_weekends_and_holidays() -> None:
    due = due_dates(EUR, date(2026, 3, 31), None, date(2026, 4, 10))
    assert due == [date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 7), date(2026, 4, 8), date(2026, 4, 9), date(2026, 4, 10)]


def test_the_date_in_progress_goes_first_and_nothing_is_due_twice() -> None:
    assert due_dates(EUR, date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 7)) == [date(2026, 4, 2), date(2026, 4, 7)]
    assert due_dates(EUR, date(2026, 4, 7), None, date(2026, 4, 7)) == []


def test_the_first_close_takes_the_latest_due_date_or_the_configured_first() -> None:
    assert due_dates(EUR, None, None, date(2026, 4, 5)) == [date(2026, 4, 2)]
    assert due_dates(EUR, None, None, date(2026, 4, 8), first=date(2026, 4, 6)) == [date(2026, 4, 7), date(2026, 4, 8)]


def test_a_close_accrues_the_days_since_the_last_business_date_and_the_months_that_ended() -> None:
    monday = close_plan(EUR, date(2026, 2, 2))
    assert monday.interest_days == (date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2))
    assert monday.fee_months == (date(2026, 1, 1),)
    assert monday.steps == (INTEREST, FEES, COLLECTION)
    assert close_plan(EUR, date(2026, 2, 3)).steps == (INTEREST, COLLECTION)
    after_new_year = close_plan(EUR, date(2026, 1, 2))  # 1 January: a TARGET2 holiday
    assert after_new_year.interest_days == (date(2026, 1, 1), date(2026, 1, 2))
    assert after_new_year.fee_months == (date(2025, 12, 1),)


def test_steps_follow_each_other_from_the_cursor() -> None:
    plan = close_plan(EUR, date(2026, 2, 2))
    assert [next_step(plan, c) for c in ("", INTEREST, FEES, COLLECTION)] == [INTEREST, FEES, COLLECTION, None]


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(min_value=1, max_value=24 * 12), min_size=1, max_size=40))
def test_a_history_of_closes_runs_every_business_date_once_in_order(gaps: list[int]) -> None:
    """The scheduler wakes at random times (hours apart, the bank down for days at a time); each
    wake closes what is due. Every business date is closed once, in order; every calendar day's
    interest accrues once; every month's fee is charged once, after it ended; a rerun at the same
    moment does nothing."""
    closed: list[date] = []
    now = START
    last: date | None = None
    first = date(2025, 12, 1)
    for hours in gaps:
        now += timedelta(hours=hours)
        through = closing_through(now, AMSTERDAM, time(22, 0))
        for day in due_dates(EUR, last, None, through, first=first):
            assert last is None or day > last
            assert day <= through
            closed.append(day)
            last = day
        assert due_dates(EUR, last, None, through, first=first) == [] or last is None
    business = [first + timedelta(days=n) for n in range(((last or first) - first).days + 1)]
    assert closed == [d for d in business if EUR.is_business_date(d)]
    accrued = [d for day in closed for d in close_plan(EUR, day).interest_days]
    if closed:
        assert accrued == [EUR.previous(closed[0]) + timedelta(days=n + 1) for n in range(len(accrued))]
        charged = [m for day in closed for m in close_plan(EUR, day).fee_months]
        assert len(charged) == len(set(charged))
        assert all(close_plan(EUR, day).fee_months == () or day.day <= 5 for day in closed)


def test_a_calendar_of_any_holidays() -> None:
    odd = BusinessCalendar("XTS", {date(2026, 3, 4)})
    assert due_dates(odd, date(2026, 3, 3), None, date(2026, 3, 6)) == [date(2026, 3, 5), date(2026, 3, 6)]
