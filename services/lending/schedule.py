"""The repayment schedule of an annuity loan, in exact minor units. Pure.

Convention (as Apache Fineract's and Mambu's default annuity products): 30/360, so each month's
interest is the outstanding principal times the annual rate / 12, whatever the month's length.
Every installment but the last is the same amount, the exact annuity rounded down to the minor
unit; each pays the month's interest (rounded half-even) first, then principal; the last pays
what principal is left (and its interest), so that the rounding ends there, a few minor units
either way, and the principal parts sum exactly to the principal lent. An installment never repays less than its
interest (near-usury rates over decades, where the rounded-down annuity is all interest) and never
more principal than is owed (loans of a few cents a month end early, the last at zero). Due dates fall on the same day of each following month (the month's last day
when it has no such day).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

from common.errors import PreconditionFailed

MONTHS_PER_YEAR = 12


@dataclass(frozen=True)
class Installment:
    number: int  # 1-based
    due_date: date
    principal_minor: int
    interest_minor: int
    period_start: date | None  # its interest runs from here to its due date; None: not recorded

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.interest_minor


def add_months(start: date, months: int) -> date:
    """The same day `months` later; the month's last day when it is shorter."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def ends_within_the_calendar(start: date, months: int) -> bool:
    """Whether the day `months` after `start` is a date at all (month arithmetic, no overflow)."""
    return (start.year * MONTHS_PER_YEAR + start.month - 1 + months) // MONTHS_PER_YEAR <= date.max.year


def _whole(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> int:
    return int(value.quantize(Decimal(1), rounding=rounding))


def level_payment(principal_minor: int, annual_rate: Decimal, term_months: int) -> int:
    """The amount of every installment but the last: P·r / (1 - (1 + r)^-n), r the monthly rate."""
    with localcontext() as exact:
        exact.prec = 50  # (1 + r)^-480 needs more than the default 28 digits to round to the cent
        monthly = annual_rate / MONTHS_PER_YEAR
        return _whole(principal_minor * monthly / (1 - (1 + monthly) ** -term_months), ROUND_DOWN)


def annuity_schedule(principal_minor: int, annual_rate: Decimal, term_months: int, start: date) -> tuple[Installment, ...]:
    """The installments of a loan of `principal_minor` at `annual_rate` (0 < rate < 1) over
    `term_months`, the first due a month after `start`; each installment's period runs from the
    previous due date (the first's from `start`) to its own. A schedule ending after the calendar's
    last day (9999-12-31, the contracts' last date) is refused, not computed into an overflow."""
    if not ends_within_the_calendar(start, term_months):
        raise PreconditionFailed(
            "TERM_BEYOND_CALENDAR",
            f"{term_months} monthly installments from {start.isoformat()} would fall due after {date.max.isoformat()}",
            {"term_months": str(term_months)},
        )
    monthly = annual_rate / MONTHS_PER_YEAR
    payment = level_payment(principal_minor, annual_rate, term_months)
    outstanding, installments = principal_minor, []
    for number in range(1, term_months + 1):
        interest = _whole(outstanding * monthly)
        last = number == term_months
        principal = outstanding if last else min(max(payment - interest, 0), outstanding)
        period_start = add_months(start, number - 1)
        installments.append(Installment(number, add_months(start, number), principal, interest, period_start))
        outstanding -= principal
    return tuple(installments)
