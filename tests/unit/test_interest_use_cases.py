"""The interest context's use cases over a fake ledger: a day's run walks the accounts chunk by
chunk with the configured tiers, announces its total once, and a completed day is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from common.db.base import Tx
from common.errors import PermissionDenied, PreconditionFailed
from common.idempotency import IdempotencyKey
from common.money import Money
from kernel.interest import InterestTier
from services.interest.domain import InterestPosted
from services.interest.module import InterestModule
from services.interest.ports import AccruedChunk, Announcements, Ledger
from services.interest.service import InterestUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, context_under_test, customer_caller

DAY = date(2026, 6, 14)


@dataclass
class FakeLedger(Ledger):
    """Accounts in id order, each earning what the table says; remembers every request."""

    interest: dict[str, int]
    requests: list[tuple[str, str, tuple[InterestTier, ...]]] = field(default_factory=list)

    async def accrue(
        self, request_id: str, day: date, currency: str, tiers: tuple[InterestTier, ...], after_account_id: str, limit: int
    ) -> AccruedChunk:
        self.requests.append((request_id, after_account_id, tiers))
        ids = sorted(i for i in self.interest if i > after_account_id)[:limit]
        remaining = [i for i in self.interest if i > (ids[-1] if ids else after_account_id)]
        posted = Money(currency, sum(self.interest[i] for i in ids))
        eligible = len(self.interest) if not after_account_id else None
        return AccruedChunk(len(ids), posted, ids[-1] if ids else after_account_id, not remaining, eligible)


@dataclass
class FakeAnnouncements(Announcements):
    posted: list[InterestPosted] = field(default_factory=list)

    async def interest_posted(self, tx: Tx, event: InterestPosted) -> None:
        self.posted.append(event)


@dataclass
class Interest:
    runs: InterestUseCases
    ledger: FakeLedger
    announcements: FakeAnnouncements


@pytest.fixture
async def interest(tmp_path: Path) -> AsyncIterator[Interest]:
    ledger = FakeLedger({f"acc_{n}": n for n in range(1, 6)})  # 1 + 2 + 3 + 4 + 5 minor units
    announcements = FakeAnnouncements()
    fakes = {Ledger: ledger, Announcements: announcements}
    async with context_under_test(InterestModule, tmp_path, fakes, interest_chunk_size=2) as context:
        yield Interest(context.resolve(InterestUseCases), ledger, announcements)


async def test_a_day_is_accrued_chunk_by_chunk_and_announced_once(interest: Interest) -> None:
    with acting_as(ADMIN_CALLER):
        progress = [p async for p in interest.runs.run(DAY, key("run"))]
    assert progress[-1].status == "COMPLETED"
    assert (progress[-1].processed, progress[-1].amount_minor) == (5, 15)
    assert [after for _, after, _ in interest.ledger.requests] == ["", "acc_2", "acc_4"]
    assert len({request_id for request_id, _, _ in interest.ledger.requests}) == 3  # one request id per chunk
    assert interest.ledger.requests[0][2][0] == InterestTier(100_000, Decimal("0.005"))  # the configured tiers
    assert interest.announcements.posted == [InterestPosted(DAY, 5, Money("EUR", 15))]


def key(request_id: str) -> IdempotencyKey:
    return IdempotencyKey(request_id, "RunDailyInterest", request_id, "usr_admin")


async def test_a_completed_day_is_refused_and_posts_nothing_more(interest: Interest) -> None:
    with acting_as(ADMIN_CALLER):
        ran = [p async for p in interest.runs.run(DAY, key("run"))]
        asked = len(interest.ledger.requests)
        assert [p async for p in interest.runs.run(DAY, key("run"))] == ran[-1:], "the request that ran it hears how it ended"
        with pytest.raises(PreconditionFailed) as again:
            [p async for p in interest.runs.run(DAY, key("another"))]
    assert again.value.reason == "INTEREST_RUN_ALREADY_COMPLETED"
    assert len(interest.ledger.requests) == asked and len(interest.announcements.posted) == 1


async def test_only_admins_run_or_read_interest(interest: Interest) -> None:
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PermissionDenied):
            [p async for p in interest.runs.run(DAY, key("run"))]
        with pytest.raises(PermissionDenied):
            await interest.runs.get(DAY.isoformat())
        with pytest.raises(PermissionDenied):
            await interest.runs.runs(FIRST_PAGE)
    assert interest.ledger.requests == []
