"""What the interest context needs from other contexts, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from common.db.base import Tx
from common.money import Money
from kernel.interest import InterestTier
from services.interest.domain import InterestPosted


@dataclass(frozen=True)
class AccruedChunk:
    """What the ledger posted for one chunk of accounts."""

    processed: int
    posted: Money
    last_account_id: str
    done: bool
    eligible: int | None  # accounts the day's run covers, known from the first chunk


class Ledger(Protocol):
    """The accounts' ledger (the account context), which posts interest where the balances are."""

    async def accrue(
        self, request_id: str, day: date, currency: str, tiers: tuple[InterestTier, ...], after_account_id: str, limit: int
    ) -> AccruedChunk:
        """Posts one chunk of the day's interest (the accounts after `after_account_id`); asked
        again with the same request id, it answers what it posted without posting again."""


class Announcements(Protocol):
    """Where the context's events go: into its outbox, in the transaction that completes a run."""

    async def interest_posted(self, tx: Tx, event: InterestPosted) -> None: ...


@dataclass(frozen=True)
class FeesChunk:
    """What the ledger charged for one chunk of a month's fees."""

    processed: int
    last_account_id: str
    done: bool


class Fees(Protocol):
    """The accounts' monthly fees (the account context), charged a chunk of accounts at a time."""

    async def charge(self, request_id: str, month: date, currency: str, after_account_id: str, limit: int) -> FeesChunk:
        """Charges one chunk of a month that has ended; asked again with the same request id it
        answers what it charged (a fee is charged once per account and month)."""


class Collections(Protocol):
    """The loans' daily collection (the lending context)."""

    async def collect(self, request_id: str, day: date, currency: str) -> None:
        """Runs (or resumes) the collection of `day` to its end; a collection completed before is
        done (not an error)."""
