"""Four eyes: above an amount (per currency; a currency without one: always) an action needs two
different admins. The first one's approval is recorded and the action waits; the same admin
asking again changes nothing; another admin's approval carries it out. Decided on the locked row
of what is approved, in the unit of work that records the answer."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class Approval(Enum):
    FIRST = "FIRST"  # record this approver; the action waits for another admin
    FINAL = "FINAL"  # carry the action out
    NONE = "NONE"  # this approver's approval is already recorded: still waiting for someone else


def needs_two(amount_minor: int, currency: str, above: Mapping[str, int]) -> bool:
    """Whether `amount_minor` of `currency` needs two admins (a currency not named: always)."""
    threshold = above.get(currency)
    return threshold is None or amount_minor > threshold


def approval(amount_minor: int, currency: str, above: Mapping[str, int], approver: str, first_approver: str) -> Approval:
    """What `approver`'s approval does, given the approval recorded before (`first_approver`, or
    empty when none is)."""
    if not needs_two(amount_minor, currency, above):
        return Approval.FINAL
    if not first_approver:
        return Approval.FIRST
    return Approval.NONE if approver == first_approver else Approval.FINAL
