"""Dates at the calendar's edges (0001-01-01, 9999-12-31, leap days, month ends), asked for in a
request or reached by the bank's clock, never make an RPC fail internally: ChargeMonthlyFees for
December 9999 answered INTERNAL (its month's end overflowed `date`), to any caller, since the
date's arithmetic ran before the admin check. A date the calendar cannot serve is INVALID_ARGUMENT
or FAILED_PRECONDITION with its reason; an admin-only RPC refuses a non-admin before looking at
the date. Generated: hypothesis draws today and the asked date, biased to the edges, and every
date-taking RPC is called on a real bank (both engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import grpc
import pytest
from grpc import aio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.grpc.client import bearer_channel
from mesh.embedded import start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.interest.v1 import interest_service_pb2 as ipb_interest
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc_interest
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, create_user, eur
from tests.conftest import issue_token
from tests.grpc_assert import field_violations

EDGES = (
    date(1, 1, 1),
    date(1, 1, 31),
    date(1, 2, 28),
    date(1, 12, 31),
    date(4, 2, 29),
    date(2000, 2, 29),
    date(2024, 2, 29),
    date(9996, 2, 29),
    date(9997, 12, 31),
    date(9998, 1, 31),
    date(9999, 1, 1),
    date(9999, 11, 30),
    date(9999, 12, 1),
    date(9999, 12, 31),
)
DAYS = st.sampled_from(EDGES) | st.dates()
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
CLOCK = FixedClock(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))
PASSWORD = "a-customer-password"


@dataclass
class World:
    """A bank on a movable clock with a customer, a disbursed loan, and channels as its first admin
    and as the customer."""

    admin: aio.Channel
    customer: aio.Channel
    customer_id: str
    account_id: str
    loan_id: str
    calls: int = 0


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    CLOCK.move_to(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))

    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, CLOCK)

    bank = await start_embedded(settings, customize=movable)
    try:
        async with bearer_channel(bank.target, await issue_token(bank.target)) as admin:
            helper, lending = Bank(admin), lgrpc.LendingServiceStub(admin)
            customer_id = await helper.verified_customer("edges")
            account_id = (await helper.default_account(customer_id)).account_id
            await helper.deposit(account_id, "1000.00", "edges")
            await create_user(igrpc.IdentityServiceStub(admin), "edge.customer", ipb.ROLE_CUSTOMER, PASSWORD, customer_id)
            applied = await lending.ApplyForLoan(
                lpb.ApplyForLoanRequest(
                    request_id="edges-a", customer_id=customer_id, account_id=account_id, principal=eur("1200.00"), term_months=12
                )
            )
            loan_id = applied.loan.loan_id
            await lending.ApproveLoan(lpb.ApproveLoanRequest(request_id="edges-p", loan_id=loan_id, annual_interest_rate="0.06"))
            await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="edges-d", loan_id=loan_id))
            token = await issue_token(bank.target, "edge.customer", PASSWORD)
            async with bearer_channel(bank.target, token) as customer:
                yield World(admin, customer, customer_id, account_id, loan_id)
    finally:
        await bank.stop(grace=1)


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _streamed(call: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]  # grpc's stubs are untyped
    async for _ in call:
        pass


def _pb(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def _months_after(day: date, months: int) -> tuple[int, int]:
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


async def _fees(w: World, today: date, day: date) -> None:
    """Admins only, refused to anyone else before the month is looked at; a month that has ended."""
    request = apb.ChargeMonthlyFeesRequest(request_id=f"fees-{w.calls}", month=_pb(day), currency_code="EUR", limit=10)
    assert await _code(agrpc.AccountServiceStub(w.customer).ChargeMonthlyFees(request)) == grpc.StatusCode.PERMISSION_DENIED
    fees = agrpc.AccountServiceStub(w.admin).ChargeMonthlyFees(request)
    if (day.year, day.month) < (today.year, today.month):
        await fees
    else:
        assert "month" in await field_violations(fees), "a month that has not ended"


async def _interest(w: World, today: date, day: date) -> None:
    tiers = [apb.InterestTier(annual_rate="0.01")]
    accrue = apb.AccrueInterestRequest(
        request_id=f"accrue-{w.calls}", business_date=_pb(day), currency_code="EUR", tiers=tiers, limit=10
    )
    run = ipb_interest.RunDailyInterestRequest(request_id=f"run-{w.calls}", business_date=_pb(day))
    interest = igrpc_interest.InterestServiceStub(w.customer)
    assert await _code(agrpc.AccountServiceStub(w.customer).AccrueInterest(accrue)) == grpc.StatusCode.PERMISSION_DENIED
    assert await _code(_streamed(interest.RunDailyInterest(run))) == grpc.StatusCode.PERMISSION_DENIED
    interest = igrpc_interest.InterestServiceStub(w.admin)
    codes = [
        await _code(agrpc.AccountServiceStub(w.admin).AccrueInterest(accrue)),
        await _code(_streamed(interest.RunDailyInterest(run))),
        await _code(interest.GetInterestRun(ipb_interest.GetInterestRunRequest(business_date=_pb(day)))),
    ]
    assert not NEVER & set(codes), codes
    if day > today:
        assert codes[:2] == [grpc.StatusCode.INVALID_ARGUMENT] * 2, "a day is accrued once it has begun"
    else:
        assert codes[0] == grpc.StatusCode.OK, codes


async def _lending(w: World, today: date, day: date) -> None:
    lending = lgrpc.LendingServiceStub(w.admin)
    collect = lpb.RunCollectionRequest(request_id=f"collect-{w.calls}", business_date=_pb(day), currency_code="EUR")
    refused = await _code(_streamed(lgrpc.LendingServiceStub(w.customer).RunCollection(collect)))
    assert refused == grpc.StatusCode.PERMISSION_DENIED
    codes = [
        await _code(_streamed(lending.RunCollection(collect))),
        await _code(lending.GetPayoffQuote(lpb.GetPayoffQuoteRequest(loan_id=w.loan_id))),
    ]
    assert not NEVER & set(codes), codes
    applied = lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id=f"loan-{w.calls}",
            customer_id=w.customer_id,
            account_id=w.account_id,
            principal=eur("240.00"),
            term_months=24,
        )
    )
    try:
        loan_id = (await applied).loan.loan_id
    except grpc.aio.AioRpcError as error:
        assert error.code() not in NEVER, error.details()
        return
    approve = lpb.ApproveLoanRequest(request_id=f"approve-{w.calls}", loan_id=loan_id, annual_interest_rate="0.05")
    code = await _code(lending.ApproveLoan(approve))
    beyond = _months_after(today, 24) > (9999, 12)
    assert code == (grpc.StatusCode.FAILED_PRECONDITION if beyond else grpc.StatusCode.OK), (today, code)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(today=DAYS, day=DAYS)
@example(today=date(2026, 6, 15), day=date(9999, 12, 31))  # the reported case
@example(today=date(9999, 12, 31), day=date(9999, 12, 31))
@example(today=date(9999, 1, 15), day=date(1, 1, 1))
async def test_dates_at_the_calendar_edges_never_fail_internally(world: World, today: date, day: date) -> None:
    CLOCK.move_to(datetime.combine(today, time(12, 0), UTC))
    world.calls += 1
    await _fees(world, today, day)
    await _interest(world, today, day)
    await _lending(world, today, day)
