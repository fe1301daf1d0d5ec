"""The interest context's use cases over a fake ledger: a day's run walks the accounts chunk by
chunk with the configured tiers, announces its total once, and a completed day is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from common.clock import Clock, FixedClock
from common.db.base import Tx
from common.errors import PermissionDenied, PreconditionFailed, Unavailable
from common.idempotency import IdempotencyKey
from common.money import Money
from kernel.interest import InterestTier
from services.interest.domain import BusinessCalendar, InterestPosted
from services.interest.module import InterestModule
from services.interest.ports import AccruedChunk, Announcements, Collections, Fees, FeesChunk, Ledger
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
class FakeDay(Fees, Collections):
    """The account context's fees and lending's collection, logging each step in one order; a
    collection may be made to fail once (the lending context down)."""

    log: list[str] = field(default_factory=list)
    fail_collection_of: set[date] = field(default_factory=set)

    async def charge(self, request_id: str, month: date, currency: str, after_account_id: str, limit: int) -> FeesChunk:
        self.log.append(f"fees {month:%Y-%m} after {after_account_id or '-'}")
        return FeesChunk(2, "acc_2" if not after_account_id else "acc_4", bool(after_account_id))

    async def collect(self, request_id: str, day: date, currency: str) -> None:
        if day in self.fail_collection_of:
            self.fail_collection_of.discard(day)
            raise Unavailable("LENDING_UNAVAILABLE", "the lending context did not answer")
        self.log.append(f"collect {day}")


@dataclass
class Interest:
    runs: InterestUseCases
    ledger: FakeLedger
    announcements: FakeAnnouncements
    day: FakeDay
    clock: FixedClock


@pytest.fixture
async def interest(tmp_path: Path) -> AsyncIterator[Interest]:
    ledger = FakeLedger({f"acc_{n}": n for n in range(1, 6)})  # 1 + 2 + 3 + 4 + 5 minor units
    announcements, day = FakeAnnouncements(), FakeDay()
    fakes = {Ledger: ledger, Announcements: announcements, Fees: day, Collections: day}
    settings = {"interest_chunk_size": 2, "first_business_date": date(2026, 3, 30)}
    async with context_under_test(InterestModule, tmp_path, fakes, **settings) as context:
        clock = context.resolve(Clock)
        assert isinstance(clock, FixedClock)
        yield Interest(context.resolve(InterestUseCases), ledger, announcements, day, clock)


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


def closing(request_id: str, interest: Interest | None = None) -> IdempotencyKey:
    """A close's key; with `interest`, its clock moved to Wednesday 8 April 2026, 22:30 in Amsterdam
    (the bank down since Friday 27 March: Good Friday and Easter Monday TARGET2 holidays)."""
    if interest is not None:
        interest.clock.move_to(datetime(2026, 4, 8, 20, 30, tzinfo=UTC))
    return IdempotencyKey(request_id, "CloseBusinessDay", request_id, "usr_admin")


def _eur(interest: Interest) -> BusinessCalendar:
    calendar = interest.runs.calendar("EUR")
    assert calendar is not None
    return calendar


def _accrued(interest: Interest) -> list[str]:
    """The days whose interest was asked for, in order, once each (a run's first chunk)."""
    return [request_id[9:19] for request_id, after, _ in interest.ledger.requests if not after]


async def test_each_due_date_closes_in_order_interest_then_fees_then_collection(interest: Interest) -> None:
    with acting_as(ADMIN_CALLER):
        closes = [c async for c in interest.runs.close(_eur(interest), closing("cob", interest))]
    done = [c.plan.day.isoformat() for c in closes if c.run.status == "COMPLETED"]
    assert done == ["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-07", "2026-04-08"]
    assert _accrued(interest) == [f"2026-03-{d}" for d in (28, 29, 30, 31)] + [f"2026-04-0{d}" for d in range(1, 9)]
    assert interest.day.log == [
        "collect 2026-03-30",
        "collect 2026-03-31",
        "fees 2026-03 after -",
        "fees 2026-03 after acc_2",
        "collect 2026-04-01",
        "collect 2026-04-02",
        "collect 2026-04-07",
        "collect 2026-04-08",
    ]
    with acting_as(ADMIN_CALLER):
        again = [c async for c in interest.runs.close(_eur(interest), closing("cob-2"))]
    assert [(c.plan.day.isoformat(), c.run.status) for c in again] == [("2026-04-08", "COMPLETED")]
    assert len(interest.day.log) == 8 and len(_accrued(interest)) == 12, "a rerun asks nothing again"


async def test_a_close_cut_short_resumes_at_its_step_and_no_later_date_starts_before(interest: Interest) -> None:
    interest.day.fail_collection_of.add(date(2026, 4, 1))
    calendar = interest.runs.calendar("EUR")
    assert calendar is not None
    with acting_as(ADMIN_CALLER):
        with pytest.raises(Unavailable):
            [c async for c in interest.runs.close(calendar, closing("cob", interest))]
        assert _due_metric() == 4, "the missed-date alarm's gauge: 1 April (in progress), 2, 7 and 8 April"
        day = await interest.runs.business_day(calendar)
        assert (day.last_closed, day.in_progress and day.in_progress.run.cursor) == (date(2026, 3, 31), "FEES")
        assert day.missed[:2] == [date(2026, 4, 1), date(2026, 4, 2)]
        assert "collect 2026-04-02" not in interest.day.log
        fees = interest.day.log.count("fees 2026-03 after -")
        [c async for c in interest.runs.close(calendar, closing("cob-resumed"))]
        day = await interest.runs.business_day(calendar)
    assert interest.day.log.count("fees 2026-03 after -") == fees, "the step done is not run again"
    assert [e for e in interest.day.log if e.startswith("collect")] == [
        f"collect {d}" for d in ("2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-07", "2026-04-08")
    ]
    assert (day.last_closed, day.in_progress, day.missed) == (date(2026, 4, 8), None, [])
    assert _due_metric() == 0
    succeeded = REGISTRY.get_sample_value("ogpgy_close_of_business_last_success_timestamp_seconds", {"calendar": "EUR"})
    assert succeeded == interest.clock.now().timestamp()


def _due_metric() -> float | None:
    return REGISTRY.get_sample_value("ogpgy_business_dates_due", {"calendar": "EUR"})


async def test_only_admins_close_the_day_or_read_it(interest: Interest) -> None:
    calendar = interest.runs.calendar("EUR")
    assert calendar is not None and interest.runs.calendar("XTS") is None
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PermissionDenied):
            [c async for c in interest.runs.close(calendar, closing("cob"))]
        with pytest.raises(PermissionDenied):
            await interest.runs.business_day(calendar)
    assert interest.day.log == [] and interest.ledger.requests == []
