"""The bank's interest convention, one function both sides agree on: the interest context chooses
the tiers and the days, the ledger (the account context) posts what this formula gives for each
balance. Actual/365 Fixed, the whole balance at the rate of the first tier whose bound it does not
pass, rounded half-even per day. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

DAY_COUNT = Decimal(365)  # Actual/365 Fixed: every day, 29 February included, is 1/365 of a year
# The context whose close of business, started on its own schedule (nobody's token behind it), may
# post the day's interest and the month's fees and run the collection as an admin may; the account
# context lets that collection charge the loans' accounts (the loan agreement's mandate).
BANKS_DAY = "interest"


@dataclass(frozen=True)
class InterestTier:
    """The whole balance earns `annual_rate` when it is at most `up_to_minor` (None: no upper bound)."""

    up_to_minor: int | None
    annual_rate: Decimal


def daily_interest(balance_minor: int, tiers: tuple[InterestTier, ...]) -> int:
    """One day's interest in minor units, computed in Decimal and rounded half-even when posted.
    Zero and overdrawn balances earn nothing."""
    if balance_minor <= 0:
        return 0
    rate = next(t.annual_rate for t in tiers if t.up_to_minor is None or balance_minor <= t.up_to_minor)
    exact = Decimal(balance_minor) * rate / DAY_COUNT
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
