"""The interest run's rules. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

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
