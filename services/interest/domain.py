"""The interest run's rules. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from common.money import Money
from common.validation import Violations

JOB = "daily-interest"


@dataclass(frozen=True)
class Tier:
    up_to: str | None  # decimal string in the run's currency; None for the last tier
    annual_rate: str


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
