"""The close of business over gRPC, on an embedded bank whose clock the test moves: each business
date of the currency's calendar closed once, in order (interest of every calendar day, the month's
fees when a month ended, then collection), missed dates caught up after downtime, weekends and
TARGET2 holidays skipped, and a rerun or a replay changing nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from grpc import aio

from common.clock import FixedClock
from common.config import Settings
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, bank_on_clock
from tests.conftest import ADMIN_PASSWORD
from tests.grpc_assert import field_violations
from tests.processes import BIN, BankProcess

CLOCK = FixedClock(datetime(2026, 3, 27, 21, 30, tzinfo=UTC))  # Friday 22:30 in Amsterdam: the 27th may close


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    engine = {}
    if request.param == "postgres":
        engine = {"database": "postgres", "postgres_dsn": request.getfixturevalue("postgres").new_database()}
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, first_business_date=date(2026, 3, 27), **engine)


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio.Channel]:
    CLOCK.move_to(datetime(2026, 3, 27, 21, 30, tzinfo=UTC))
    async with bank_on_clock(settings, CLOCK) as channel:
        yield channel


def _iso(d: date_pb2.Date) -> str:
    return date(d.year, d.month, d.day).isoformat()


async def _close(days: igrpc.InterestServiceStub, request_id: str) -> list[ipb.BusinessDayClose]:
    request = ipb.CloseBusinessDayRequest(request_id=request_id, currency_code="EUR")
    return [answer.close async for answer in days.CloseBusinessDay(request)]


def _closed(progress: list[ipb.BusinessDayClose]) -> list[str]:
    return [_iso(c.business_date) for c in progress if c.completed]


async def _interest_days(days: igrpc.InterestServiceStub) -> list[str]:
    runs = await days.ListInterestRuns(ipb.ListInterestRunsRequest(page_size=100))
    return sorted(_iso(r.business_date) for r in runs.runs if r.status == ipb.INTEREST_RUN_STATUS_COMPLETED)


async def test_business_dates_close_in_order_once_and_catch_up_after_downtime(channel: aio.Channel) -> None:
    bank, days = Bank(channel), igrpc.InterestServiceStub(channel)
    customer = await bank.verified_customer("cob")
    savings = await bank.open(customer, "cob-savings")
    await bank.deposit(savings, "10000.00", "cob-in")
    empty = await bank.open(customer, "cob-empty", apb.ACCOUNT_TYPE_BUSINESS_CHECKING)  # below its minimum: March's fee

    first = await _close(days, "cob-friday")
    assert _closed(first) == ["2026-03-27"]
    assert [c.steps for c in first if c.completed] == [[ipb.CLOSE_STEP_INTEREST, ipb.CLOSE_STEP_COLLECTION]]
    assert await _interest_days(days) == ["2026-03-27"]

    CLOCK.move_to(datetime(2026, 4, 8, 20, 30, tzinfo=UTC))  # down from Saturday to Wednesday 8 April, 22:30 (CEST)
    status = await days.GetBusinessDay(ipb.GetBusinessDayRequest(currency_code="EUR"))
    missed = ["2026-03-30", "2026-03-31", "2026-04-01", "2026-04-02", "2026-04-07", "2026-04-08"]  # Good Friday, Easter Monday
    assert (_iso(status.last_closed), [_iso(d) for d in status.missed]) == ("2026-03-27", missed)
    assert not status.HasField("in_progress") and status.time_zone == "Europe/Amsterdam"

    caught_up = await _close(days, "cob-wednesday")
    assert _closed(caught_up) == missed, "every missed business date once, in order"
    april_first = next(c for c in caught_up if c.completed and _iso(c.business_date) == "2026-04-01")
    assert [_iso(m) for m in april_first.fee_months] == ["2026-03-01"]
    assert april_first.step_done == ipb.CLOSE_STEP_COLLECTION
    every_day = [f"2026-03-{d}" for d in range(27, 32)] + [f"2026-04-0{d}" for d in range(1, 9)]
    assert await _interest_days(days) == every_day, "every calendar day's interest, weekends and holidays included"
    balances = {a: await bank.balance(a) for a in (savings, empty)}
    assert balances[empty][0] == "-15.00", "March's fee, once"

    again = await _close(days, "cob-rerun")
    assert [(_iso(c.business_date), c.completed) for c in again] == [("2026-04-08", True)], "nothing left to close"
    replay = await _close(days, "cob-wednesday")
    assert _closed(replay) == ["2026-04-08"]
    assert {a: await bank.balance(a) for a in (savings, empty)} == balances, "a rerun and a replay change nothing"
    assert await _interest_days(days) == every_day
    status = await days.GetBusinessDay(ipb.GetBusinessDayRequest(currency_code="EUR"))
    assert (_iso(status.last_closed), list(status.missed), _iso(status.closing_through)) == ("2026-04-08", [], "2026-04-08")


async def test_racing_closes_and_their_twins_all_answer_with_the_closed_dates(channel: aio.Channel) -> None:
    """Admins (and their retries) closing at once: one request drives each date, every other one
    waits for it and answers with the date closed, never RUN_IN_PROGRESS to one twin and OK to
    the other."""
    days = igrpc.InterestServiceStub(channel)
    CLOCK.move_to(datetime(2026, 4, 8, 20, 30, tzinfo=UTC))
    asked = ["cob-a", "cob-a", "cob-b", "cob-b", "cob-c"]
    answers = await asyncio.gather(*(_close(days, r) for r in asked))
    for request_id, answer in zip(asked, answers, strict=True):
        assert answer and answer[-1].completed and _iso(answer[-1].business_date) == "2026-04-08", request_id
    every_day = [f"2026-03-{d}" for d in range(27, 32)] + [f"2026-04-0{d}" for d in range(1, 9)]
    assert await _interest_days(days) == every_day, "each date's interest once"


async def test_a_currency_without_a_calendar_is_refused(channel: aio.Channel) -> None:
    days = igrpc.InterestServiceStub(channel)
    assert "currency_code" in await field_violations(days.GetBusinessDay(ipb.GetBusinessDayRequest(currency_code="XTS")))
    assert "currency_code" in await field_violations(days.GetBusinessDay(ipb.GetBusinessDayRequest(currency_code="eur")))


@pytest.mark.slow
async def test_ogpgy_cob_run_and_status_on_a_running_bank(tmp_path: Path) -> None:
    """The commands an operator (or the daily CronJob) runs, on a bank on the real clock."""
    bank = BankProcess(tmp_path).start()

    def ogpgy(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD}
        command = [str(BIN / "ogpgy"), "cob", *args, "--target", bank.target]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    try:
        before = await asyncio.to_thread(ogpgy, "status")
        assert before.returncode == 0, before.stderr
        assert "last closed     none yet" in before.stdout and "Europe/Amsterdam" in before.stdout
        due = before.stdout.split("due, not closed ")[1].strip()
        ran = await asyncio.to_thread(ogpgy, "run")
        assert ran.returncode == 0, ran.stderr
        assert f"{due} EUR: closed, interest of " in ran.stdout and "EUR: 1 business date closed" in ran.stdout
        again = await asyncio.to_thread(ogpgy, "run")
        assert again.returncode == 0 and f"EUR: nothing due; last closed {due}" in again.stdout, again.stdout
        after = await asyncio.to_thread(ogpgy, "status")
        assert f"last closed     {due}" in after.stdout and "due, not closed none" in after.stdout
        refused = await asyncio.to_thread(ogpgy, "status", "--currency", "XTS")
        assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
    finally:
        bank.stop()
