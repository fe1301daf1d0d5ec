"""Servicing a disbursed loan: what is owed, how a payment is allocated, what paying off costs,
and what an installment missed costs. Pure; minor units.

The rules (Apache Fineract's defaults for an annuity product, written down here once):

- **Allocation.** A payment first settles what is due by today, the oldest installment first,
  each its late fee, then its interest, then its principal. What remains pays the next
  installments in advance, in order, interest then principal, as they are scheduled: paying in
  advance saves no interest (paying off does).
- **Overpayment.** A payment above the payoff amount is refused: the bank keeps no money on a
  loan, and more than the payoff amount would only buy interest the payoff waives.
- **Payoff.** Every unpaid late fee, the interest of the installments due, the interest of the
  current period accrued to today, and all the principal still owed. The interest of later periods
  is waived. The current period runs from the previous due date (the first period: from the day
  the schedule starts) to its due date; its accrual is its interest * days elapsed / 30, the days
  counted by 30E/360 and kept between 0 and 30, rounded half-even to the minor unit once (interest
  paid in advance is not refunded).
- **Collection.** On a business date, everything due by that date is collected whole or not at
  all. An installment found unpaid on or after its due date is overdue from its due date and is
  charged the product's late fee once. The loan is in arrears for the days since its oldest
  unpaid installment fell due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from common.errors import PreconditionFailed
from services.lending.schedule import add_months

DAYS_PER_MONTH = 30  # 30/360


@dataclass(frozen=True)
class InstallmentState:
    """An installment of the schedule and what has been paid, charged and waived on it."""

    number: int
    due_date: date
    principal: int
    interest: int
    period_start: date | None  # the previous due date (the first: the schedule's start); see `starts_on`
    penalty: int = 0  # late fee charged
    paid_principal: int = 0
    paid_interest: int = 0
    paid_penalty: int = 0
    waived_interest: int = 0
    overdue_since: date | None = None

    @property
    def starts_on(self) -> date:
        """The day the period ending on the due date began. A schedule written before periods were
        recorded left the first installment's unknown: the month before its due date stands for it
        (up to three days early when the schedule started on a 29th to 31st of a longer month)."""
        return self.period_start if self.period_start is not None else add_months(self.due_date, -1)

    @property
    def owed_penalty(self) -> int:
        return self.penalty - self.paid_penalty

    @property
    def owed_interest(self) -> int:
        return self.interest - self.paid_interest - self.waived_interest

    @property
    def owed_principal(self) -> int:
        return self.principal - self.paid_principal

    @property
    def owed(self) -> int:
        return self.owed_penalty + self.owed_interest + self.owed_principal

    @property
    def settled(self) -> bool:
        return self.owed == 0

    def with_part(self, part: Part, sign: int = 1) -> InstallmentState:
        """After `part` is paid (sign -1: after it is undone)."""
        return replace(
            self,
            paid_penalty=self.paid_penalty + sign * part.penalty,
            paid_interest=self.paid_interest + sign * part.interest,
            paid_principal=self.paid_principal + sign * part.principal,
            waived_interest=self.waived_interest + sign * part.waived_interest,
        )


@dataclass(frozen=True)
class Part:
    """What a payment does to one installment."""

    number: int
    penalty: int = 0
    interest: int = 0
    principal: int = 0
    waived_interest: int = 0

    @property
    def paid(self) -> int:
        return self.penalty + self.interest + self.principal


@dataclass(frozen=True)
class Allocation:
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def penalty(self) -> int:
        return sum(p.penalty for p in self.parts)

    @property
    def interest(self) -> int:
        return sum(p.interest for p in self.parts)

    @property
    def principal(self) -> int:
        return sum(p.principal for p in self.parts)

    @property
    def total(self) -> int:
        return sum(p.paid for p in self.parts)


@dataclass(frozen=True)
class Position:
    """Where a loan stands on a day."""

    outstanding_principal: int
    overdue_minor: int  # owed on installments already due
    days_in_arrears: int
    next_due_date: date | None


def _open(installments: Iterable[InstallmentState]) -> list[InstallmentState]:
    return sorted((i for i in installments if not i.settled), key=lambda i: i.number)


def _settle(installment: InstallmentState, budget: int, *, penalty: bool = True) -> Part:
    """The part of `budget` that goes to one installment: late fee, interest, principal."""
    fee = min(budget, installment.owed_penalty) if penalty else 0
    interest = min(budget - fee, installment.owed_interest)
    principal = min(budget - fee - interest, installment.owed_principal)
    return Part(installment.number, fee, interest, principal)


def days_30_360(start: date, end: date) -> int:
    """Days from `start` to `end` as 30E/360 counts them (every month 30 days)."""
    return (end.year - start.year) * 360 + (end.month - start.month) * 30 + min(end.day, 30) - min(start.day, 30)


def _accrued(installment: InstallmentState, today: date) -> int:
    """The interest of the installment's period accrued by `today` (its period ends on its due date)."""
    days = max(0, min(DAYS_PER_MONTH, days_30_360(installment.starts_on, today)))
    return int((Decimal(installment.interest) * days / DAYS_PER_MONTH).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def payoff(installments: Iterable[InstallmentState], today: date) -> Allocation:
    """Everything that closes the loan today (see the module's rules)."""
    parts, current_seen = [], False
    for installment in _open(installments):
        part = _settle(installment, installment.owed)
        if installment.due_date > today:
            earned = installment.paid_interest + installment.waived_interest
            if not current_seen:
                earned = max(earned, _accrued(installment, today))
                current_seen = True
            interest = max(0, earned - installment.paid_interest - installment.waived_interest)
            part = replace(part, interest=interest, waived_interest=installment.owed_interest - interest)
        parts.append(part)
    return Allocation(tuple(parts))


def allocate(installments: Iterable[InstallmentState], amount: int, today: date) -> Allocation:
    """A payment of `amount`, by the module's rules; refused above the payoff amount."""
    pending = _open(installments)
    limit = payoff(pending, today).total
    if amount > limit:
        raise PreconditionFailed(
            "AMOUNT_EXCEEDS_PAYOFF",
            "a payment cannot be more than the loan's payoff amount; to close the loan, pay off",
            {"payoff_minor": str(limit)},
        )
    ordered = [i for i in pending if i.due_date <= today] + [i for i in pending if i.due_date > today]
    parts, left = [], amount
    for installment in ordered:
        if not left:
            break
        part = _settle(installment, left)
        parts.append(part)
        left -= part.paid
    return Allocation(tuple(p for p in parts if p.paid))


def due_by(installments: Iterable[InstallmentState], day: date) -> Allocation:
    """Everything owed on the installments due by `day`: what a collection on `day` takes."""
    return Allocation(tuple(_settle(i, i.owed) for i in _open(installments) if i.due_date <= day))


def newly_overdue(installments: Iterable[InstallmentState], day: date) -> list[InstallmentState]:
    """Installments due by `day`, unpaid, and not yet marked overdue."""
    return [i for i in _open(installments) if i.due_date <= day and i.overdue_since is None]


def position(installments: Iterable[InstallmentState], today: date) -> Position:
    states = list(installments)
    pending = _open(states)
    due = [i for i in pending if i.due_date <= today]
    oldest = min((i.due_date for i in due), default=today)
    return Position(
        outstanding_principal=sum(i.owed_principal for i in states),
        overdue_minor=sum(i.owed for i in due),
        days_in_arrears=(today - oldest).days,
        next_due_date=min((i.due_date for i in pending if i.due_date > today), default=None),
    )
