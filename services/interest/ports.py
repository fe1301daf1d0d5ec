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
