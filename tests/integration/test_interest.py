"""The daily interest run over gRPC: exact tiered values, once per date, resumable after a kill."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.type.v1 import date_pb2
from services.account.repository import AccountUnits
from tests.bank_helpers import Bank, admin_channel, eur
from tests.conftest import ADMIN_PASSWORD
from tests.grpc_assert import error_reason, field_violations
from tests.processes import BIN, BankProcess

# balance -> one day's interest, computed by hand in tests/unit/test_interest_rules.py
EDGES = {"1000.00": "1000.01", "1000.01": "1000.05", "10000.00": "10000.41", "10000.01": "10000.69"}


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Small chunks, so a run takes several; the set-based SQL runs on both engines."""
    engine = {}
    if request.param == "postgres":
        engine = {"database": "postgres", "postgres_dsn": request.getfixturevalue("postgres").new_database()}
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, interest_chunk_size=2, **engine)


async def _accounts_at_edges(channel: aio.Channel) -> dict[str, str]:
    """Savings accounts at the tier edges, an empty one, and an overdrawn business account."""
    client = Bank(channel)
    opened = {}
    customer = await client.verified_customer("interest")
    for i, balance in enumerate([*EDGES, "0"]):
        account = await client.open(customer, f"sav-{i}")
        if balance != "0":
            await client.deposit(account, balance, f"int-{i}")
        opened[account] = balance
    business = await client.open(customer, "biz", apb.ACCOUNT_TYPE_BUSINESS_CHECKING)
    await client.accounts.Withdraw(apb.WithdrawRequest(request_id="overdraw", account_id=business, amount=eur("50.00")))
    opened[business] = "-50.00"
    return opened


def _day(iso: str) -> date_pb2.Date:
    y, m, d = (int(x) for x in iso.split("-"))
    return date_pb2.Date(year=y, month=m, day=d)


async def _run(channel: aio.Channel, iso: str) -> list[ipb.InterestRun]:
    stream = igrpc.InterestServiceStub(channel).RunDailyInterest(
        ipb.RunDailyInterestRequest(request_id=f"r-{iso}", business_date=_day(iso))
    )
    return [answer.run async for answer in stream]


async def test_exact_tiered_interest_once_per_date(bank: RunningBank, channel: aio.Channel) -> None:
    opened = await _accounts_at_edges(channel)
    progress = await _run(channel, "2026-06-15")
    final = progress[-1]
    assert final.status == ipb.INTEREST_RUN_STATUS_COMPLETED and len(progress) >= 4, "progress streamed chunk by chunk"
    assert final.total == final.processed == 6
    assert final.total_interest.amount == "1.14"  # 0.01 + 0.04 + 0.41 + 0.68 + 0 + 0
    client = Bank(channel)
    for account, balance in opened.items():
        expected = EDGES.get(balance, balance if balance != "0" else "0.00")
        assert (await client.balance(account))[0] == expected
    info = await error_reason(
        igrpc.InterestServiceStub(channel)
        .RunDailyInterest(ipb.RunDailyInterestRequest(request_id="again", business_date=_day("2026-06-15")))
        .read(),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert info.reason == "INTEREST_RUN_ALREADY_COMPLETED"
    leap = (await _run(channel, "2024-02-29"))[-1]
    assert leap.status == ipb.INTEREST_RUN_STATUS_COMPLETED, "29 February is a business date (Actual/365 Fixed)"
    got = (
        await igrpc.InterestServiceStub(channel).GetInterestRun(ipb.GetInterestRunRequest(business_date=_day("2026-06-15")))
    ).run
    assert got.processed == 6 and got.total_interest.amount == "1.14"
    debits, credits, total = await bank.contexts["account"].resolve(AccountUnits).read(lambda uow: uow.accounts.totals())
    assert debits == credits and total == 0
    bad = ipb.RunDailyInterestRequest(request_id="feb-30", business_date=date_pb2.Date(year=2026, month=2, day=30))
    assert "business_date" in await field_violations(igrpc.InterestServiceStub(channel).RunDailyInterest(bad).read())


async def test_a_day_accrues_once_it_has_begun_for_the_accounts_open_by_then(bank: RunningBank, channel: aio.Channel) -> None:
    """Interest was accepted for any future date (2858), and an account opened today earned
    interest for last June. Now: no day ahead of today; each account from the day it was opened."""
    opened = await _accounts_at_edges(channel)  # today, 2026-06-15 (the tests' clock)
    interest, accounts = igrpc.InterestServiceStub(channel), agrpc.AccountServiceStub(channel)
    for iso in ("2026-06-16", "2858-01-01"):
        ahead = ipb.RunDailyInterestRequest(request_id=f"ahead-{iso}", business_date=_day(iso))
        assert "business_date" in await field_violations(interest.RunDailyInterest(ahead).read())
        direct = apb.AccrueInterestRequest(
            request_id=f"direct-{iso}",
            business_date=_day(iso),
            currency_code="EUR",
            limit=10,
            tiers=[apb.InterestTier(annual_rate="0.01")],
        )
        assert "business_date" in await field_violations(accounts.AccrueInterest(direct))
    before = (await _run(channel, "2026-06-14"))[-1]
    assert (before.processed, before.total_interest.amount) == (0, "0.00"), "opened the day after: nothing for that day"
    balances = {a: (await Bank(channel).balance(a))[0] for a in opened}
    assert balances == {a: b if b != "0" else "0.00" for a, b in opened.items()}
    assert (await _run(channel, "2026-06-15"))[-1].processed == 6, "their first day earns"


async def test_a_chunk_asked_again_reports_what_is_posted_without_posting(bank: RunningBank, channel: aio.Channel) -> None:
    """AccrueInterest asked again for a posted range, from its start or from inside it, posts nothing."""
    opened = await _accounts_at_edges(channel)
    interest = {a: Decimal(EDGES.get(b, b)) - Decimal(b) for a, b in opened.items()}
    ids = sorted(opened)
    tiers = [
        apb.InterestTier(up_to=eur("1000.00"), annual_rate="0.005"),
        apb.InterestTier(up_to=eur("10000.00"), annual_rate="0.015"),
        apb.InterestTier(annual_rate="0.025"),
    ]

    async def accrue(after: str, limit: int) -> apb.AccrueInterestResponse:
        return await agrpc.AccountServiceStub(channel).AccrueInterest(
            apb.AccrueInterestRequest(
                request_id=f"accrue-{after or 'start'}-{limit}",
                business_date=_day("2026-06-15"),
                currency_code="EUR",
                tiers=tiers,
                after_account_id=after,
                limit=limit,
            )
        )

    first = await accrue("", 4)
    assert (first.processed, first.last_account_id, first.eligible) == (4, ids[3], 6)
    assert Decimal(first.interest_posted.amount) == sum(interest[a] for a in ids[:4])
    again = await accrue("", 10)
    assert (again.processed, again.last_account_id, again.interest_posted.amount) == (4, ids[3], first.interest_posted.amount)
    inside = await accrue(ids[1], 10)
    assert (inside.processed, inside.last_account_id, inside.done) == (2, ids[3], False)
    assert Decimal(inside.interest_posted.amount) == interest[ids[2]] + interest[ids[3]]
    rest = await accrue(ids[3], 10)
    assert (rest.processed, rest.done) == (2, True)
    assert Decimal(first.interest_posted.amount) + Decimal(rest.interest_posted.amount) == Decimal("1.14")
    client = Bank(channel)
    for account, balance in opened.items():
        assert Decimal((await client.balance(account))[0]) == Decimal(balance) + interest[account], "credited exactly once"


@pytest.mark.slow
async def test_a_run_killed_midway_resumes_with_identical_totals(tmp_path: Path) -> None:
    first = BankProcess(tmp_path, "--interest-chunk", "2").start()
    try:
        async with admin_channel(first.target) as channel:
            opened = await _accounts_at_edges(channel)
    finally:
        first.stop()
    today = datetime.now(UTC).date().isoformat()  # a process on the real clock: its accounts opened today
    crashing = BankProcess(tmp_path, "--interest-chunk", "2", faults="batch.after_chunk").start()
    async with admin_channel(crashing.target) as channel:
        with pytest.raises(aio.AioRpcError):
            await _run(channel, today)
    assert crashing.wait_exit(timeout=30) == 137
    resumed = BankProcess(tmp_path, "--interest-chunk", "3").start()  # another chunk size: the recorded chunk still counts
    try:
        cli = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "ogpgy"), "interest", "run", "--date", today, "--target", resumed.target],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OGPGY_PASSWORD": ADMIN_PASSWORD},
        )
        assert cli.returncode == 0, cli.stderr
        assert "COMPLETED, 6 accounts, 1.14 EUR posted" in cli.stdout and "100%" in cli.stderr
        assert "\r" not in cli.stderr, "no terminal: the progress is printed once, with no carriage returns"
        async with admin_channel(resumed.target) as channel:
            client = Bank(channel)
            for account, balance in opened.items():
                expected = EDGES.get(balance, balance if balance != "0" else "0.00")
                assert (await client.balance(account))[0] == expected, "each account credited exactly once"
            expense = Decimal((await client.balance("acc_INTEREST_EXPENSE_EUR"))[0])
            assert expense == Decimal("-1.14")
    finally:
        resumed.stop()
