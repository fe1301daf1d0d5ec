"""The interest run's rules. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal

import holidays

from common.money import Money
from common.validation import Violations
from kernel.interest import InterestTier

JOB = "daily-interest"


def configured_tier(currency: str, up_to: str | None, annual_rate: str) -> InterestTier:
    """A tier as tiers.toml writes it: the bound a decimal amount in the run's currency (none for
    the last tier), the rate an annual decimal fraction."""
    return InterestTier(Money.parse(currency, up_to).minor if up_to is not None else None, Decimal(annual_rate))


def business_date(v: Violations, value: date | None, today: date | None = None, field: str = "business_date") -> str:
    """The run key: an ISO date (29 February included: Actual/365 Fixed accrues every day). A day
    is accrued once it has begun, never ahead (`today`: when a run is asked for); each account
    earns from the day it was opened on (the account context's rule)."""
    if value is None:
        v.add(field, "required: a valid calendar date")
        return ""
    if today is not None:
        v.check(value <= today, field, f"must not be after today ({today.isoformat()}): a day is accrued once it has begun")
    return value.isoformat()


@dataclass(frozen=True)
class InterestPosted:
    """A day's interest run completed."""

    day: date
    accounts: int
    total: Money


def chunk_request_id(day: date, currency: str, tiers: tuple[InterestTier, ...], chunk: int, cursor: str) -> str:
    """The request_id of one chunk's AccrueInterest: the same for the same chunk asked again (a
    lost answer retried), another when the chunk differs (a run resumed with other tiers or
    another chunk size), since the account context holds a request_id to its body."""
    terms = repr((currency, [(t.up_to_minor, str(t.annual_rate)) for t in tiers], chunk)).encode()
    digest = hashlib.blake2b(terms, digest_size=4).hexdigest()
    return f"interest-{day.isoformat()}-{currency}-{digest}-{cursor or 'start'}"[:64].replace("_", "-")


# --- The bank's day: business calendars and the close of business ---------------------------------

CLOSE_JOB = "close-of-business"
INTEREST, FEES, COLLECTION = "INTEREST", "FEES", "COLLECTION"  # a close's steps, in their order
STEPS = (INTEREST, FEES, COLLECTION)
CATCH_UP_DAYS = 366  # the most calendar days one close looks back over (a bank down longer is a decision)
WEEKEND = frozenset({5, 6})  # Saturday, Sunday


@dataclass(frozen=True)
class BusinessCalendar:
    """A currency's business dates: not a weekend day and not one of its market's holidays (any
    container of dates: the `holidays` library's calendars are computed per year as asked)."""

    currency: str
    holidays: Container[date]

    def is_business_date(self, day: date) -> bool:
        return day.weekday() not in WEEKEND and day not in self.holidays

    def previous(self, day: date) -> date:
        """The business date before `day`."""
        before = day - timedelta(days=1)
        while not self.is_business_date(before):
            before -= timedelta(days=1)
        return before

    def latest(self, through: date) -> date:
        """The last business date on or before `through`."""
        return through if self.is_business_date(through) else self.previous(through)


def closing_through(now: datetime, zone: tzinfo, close_at: time) -> date:
    """The last date whose business may be closed at `now`: today in the bank's time zone once its
    close time has passed, else yesterday."""
    local = now.astimezone(zone)
    return local.date() if local.time() >= close_at else local.date() - timedelta(days=1)


def due_dates(
    calendar: BusinessCalendar, last_closed: date | None, in_progress: date | None, through: date, first: date | None = None
) -> list[date]:
    """The business dates to close, in order: the one in progress first (a date never starts
    before the previous one completed), then every business date after it (or after the last
    closed) up to `through`: missed dates caught up in order. With no close yet, the bank's
    `first` business date, or else the latest business date alone."""
    if in_progress is not None:
        after = in_progress
    elif last_closed is not None:
        after = last_closed
    else:
        start = calendar.latest(through) if first is None else first
        after = start - timedelta(days=1)
    after = max(after, through - timedelta(days=CATCH_UP_DAYS))
    dates = [in_progress] if in_progress is not None else []
    day = after + timedelta(days=1)
    while day <= through:
        if calendar.is_business_date(day):
            dates.append(day)
        day += timedelta(days=1)
    return dates


@dataclass(frozen=True)
class ClosePlan:
    """What closing one business date does, in order: the interest of every calendar day since the
    business date before it (a weekend's and a holiday's interest accrue at the next close: a day
    is accrued once it has begun), the fees of every month that ended since then, then the loans'
    collection of the date."""

    day: date
    interest_days: tuple[date, ...]
    fee_months: tuple[date, ...]  # first days of months

    @property
    def steps(self) -> tuple[str, ...]:
        return (INTEREST, FEES, COLLECTION) if self.fee_months else (INTEREST, COLLECTION)


def close_plan(calendar: BusinessCalendar, day: date) -> ClosePlan:
    previous = calendar.previous(day)
    days = tuple(previous + timedelta(days=n) for n in range(1, (day - previous).days + 1))
    months = tuple(d.replace(day=1) - timedelta(days=1) for d in days if d.day == 1)
    return ClosePlan(day, days, tuple(m.replace(day=1) for m in months))


def next_step(plan: ClosePlan, cursor: str) -> str | None:
    """The step after the one a run's cursor names ('' before the first); None once all are done."""
    steps = plan.steps
    if not cursor:
        return steps[0]
    at = steps.index(cursor) + 1
    return steps[at] if at < len(steps) else None


def business_calendar(currency: str, market: str) -> BusinessCalendar:
    """A currency's calendar from the `holidays` library: `market` a financial market it knows
    (ECB: TARGET2's closing days; NYSE, XLON, ...) or else a country's public holidays (SE)."""
    calendar = holidays.financial_holidays(market) if market in holidays.list_supported_financial() else None
    return BusinessCalendar(currency, calendar if calendar is not None else holidays.country_holidays(market))
