"""The close of business on the bank's own schedule: two embedded banks (two replicas of every
context) on one real PostgreSQL database and one clock the test moves, both schedulers on. Exactly
one drives the day (the lease), each business date closes once and in order, missed dates are
caught up after downtime, and the other replica takes over when the driver stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from mesh.embedded import RunningBank, start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from services.interest.scheduler import CloseOfBusinessScheduler
from tests.bank_helpers import Bank, admin_channel, eventually
from tests.conftest import ADMIN_PASSWORD
from tests.servers import PostgresServer

FRIDAY = datetime(2026, 3, 27, 21, 30, tzinfo=UTC)  # 22:30 in Amsterdam: the 27th may close
MISSED = ["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-07", "2026-04-08"]  # Good Friday, Easter Monday


async def _replica(settings: Settings, clock: FixedClock) -> RunningBank:
    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, clock)

    return await start_embedded(settings, customize=movable)


def _settings(tmp_path: Path, dsn: str, name: str) -> Settings:
    return Settings(
        data_dir=tmp_path / name,
        port=0,
        admin_password=ADMIN_PASSWORD,
        database="postgres",
        postgres_dsn=dsn,
        instance_name=name,
        first_business_date=date(2026, 3, 27),
        business_calendars={"EUR": "ECB"},
        close_of_business_scheduler=True,
        close_of_business_poll_seconds=0.05,
    )


def _scheduler(bank: RunningBank) -> CloseOfBusinessScheduler:
    return bank.contexts["interest"].resolve(CloseOfBusinessScheduler)


@pytest.fixture
async def two_replicas(postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[tuple[FixedClock, RunningBank, RunningBank]]:
    dsn, clock = postgres.new_database(), FixedClock(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # before the close time
    first = await _replica(_settings(tmp_path, dsn, "bank[0]"), clock)
    second = await _replica(_settings(tmp_path, dsn, "bank[1]"), clock)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(first.stop, 1)
        stack.push_async_callback(second.stop, 1)
        yield clock, first, second


async def _last_closed(days: igrpc.InterestServiceStub) -> str:
    status = await days.GetBusinessDay(ipb.GetBusinessDayRequest(currency_code="EUR"))
    d = status.last_closed
    return date(d.year, d.month, d.day).isoformat() if status.HasField("last_closed") else ""


async def _interest_days(days: igrpc.InterestServiceStub) -> list[str]:
    runs = await days.ListInterestRuns(ipb.ListInterestRunsRequest(page_size=100))
    done = [r.business_date for r in runs.runs if r.status == ipb.INTEREST_RUN_STATUS_COMPLETED]
    return sorted(date(d.year, d.month, d.day).isoformat() for d in done)


async def test_one_replica_closes_each_date_once_in_order_and_the_other_takes_over(
    two_replicas: tuple[FixedClock, RunningBank, RunningBank],
) -> None:
    clock, first, second = two_replicas
    async with admin_channel(first.target) as channel:
        bank, days = Bank(channel), igrpc.InterestServiceStub(channel)
        customer = await bank.verified_customer("sched")
        savings = await bank.open(customer, "sched-savings")
        await bank.deposit(savings, "10000.00", "sched-in")
        empty = await bank.open(customer, "sched-empty", apb.ACCOUNT_TYPE_BUSINESS_CHECKING)  # March's fee
        assert await _last_closed(days) == "", "nothing closes before the bank's close time"

        schedulers = {name: _scheduler(b) for name, b in (("first", first), ("second", second))}
        clock.move_to(FRIDAY)
        await eventually(lambda: _closed_by(schedulers, "2026-03-27"), what="the 27th closed on schedule")
        clock.move_to(datetime(2026, 4, 8, 20, 30, tzinfo=UTC))  # down from Saturday to Wednesday 8 April, 22:30
        await eventually(lambda: _closed_by(schedulers, "2026-04-08"), what="the missed dates caught up")
        assert await _is(days, "2026-04-08")

        drivers = {name: s.closed for name, s in schedulers.items() if s.closed}
        assert len(drivers) == 1, f"exactly one replica drives the day: {drivers}"
        [(leader, closed)] = drivers.items()
        assert [d.isoformat() for _, d in closed] == ["2026-03-27", *MISSED], "each date once, in order"
        every_day = [f"2026-03-{d}" for d in range(27, 32)] + [f"2026-04-0{d}" for d in range(1, 9)]
        assert await _interest_days(days) == every_day, "every calendar day's interest, once"
        assert (await bank.balance(empty))[0] == "-15.00", "March's fee, once"
        balance = await bank.balance(savings)

    stopped, survivor = (first, second) if leader == "first" else (second, first)
    await stopped.stop(grace=1)  # the driver goes away: its lease with its connection
    clock.move_to(datetime(2026, 4, 9, 20, 30, tzinfo=UTC))
    async with admin_channel(survivor.target) as channel:
        days = igrpc.InterestServiceStub(channel)
        await eventually(lambda: _closed_by({"": _scheduler(survivor)}, "2026-04-09"), what="the other replica closing the 9th")
        assert await _is(days, "2026-04-09")
        assert [d.isoformat() for _, d in _scheduler(survivor).closed] == ["2026-04-09"]
        assert (await Bank(channel).balance(savings)) != balance, "the 9th's interest posted"
        assert await _interest_days(days) == [*every_day, "2026-04-09"]


async def _is(days: igrpc.InterestServiceStub, last: str) -> bool:
    return await _last_closed(days) == last


async def _closed_by(schedulers: dict[str, CloseOfBusinessScheduler], day: str) -> bool:
    """Whether a scheduler reported `day` closed (what GetBusinessDay shows a moment before)."""
    return any(d.isoformat() == day for s in schedulers.values() for _, d in s.closed)
