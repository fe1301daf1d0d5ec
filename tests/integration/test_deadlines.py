"""A deadline that runs out anywhere along a call, in-process hops included, is DEADLINE_EXCEEDED
to the caller: never INTERNAL or UNAVAILABLE, never logged as an unhandled error, and nothing of
OpenTelemetry's context is left behind ("Failed to detach context"). Before, RunDailyInterest ->
AccrueInterest and CreatePayment -> the account context answered INTERNAL or UNAVAILABLE."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, eur, generous_fraud_rules
from tests.conftest import ADMIN_PASSWORD

DEADLINES = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02, 0.05)
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, fraud_rules_path=generous_fraud_rules(tmp_path))


def _day(key: str) -> date_pb2.Date:
    """A business date of its own per attempt (a date runs once), in the past."""
    day = date(2026, 1, 1) + timedelta(days=int(key.rsplit("-", 1)[1]))
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _streamed(call: aio.UnaryStreamCall) -> None:
    async for _ in call:
        pass


async def test_a_deadline_inside_in_process_hops_is_deadline_exceeded(
    channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bank = Bank(channel)
    customer = await bank.verified_customer("deadlines")
    account = (await bank.default_account(customer)).account_id
    savings = await bank.open(customer, "deadlines")
    await bank.deposit(account, "5000.00", "deadlines")
    payments, interest, loans = (
        pgrpc.PaymentServiceStub(channel),
        igrpc.InterestServiceStub(channel),
        lgrpc.LendingServiceStub(channel),
    )
    calls: dict[str, Callable[[str, float], Awaitable[object]]] = {
        "CreatePayment": lambda key, t: payments.CreatePayment(
            ppb.CreatePaymentRequest(
                request_id=key,
                debtor_account_id=account,
                amount=eur("1.00"),
                internal=ppb.InternalBeneficiary(account_id=savings),
            ),
            timeout=t,
        ),
        "RunDailyInterest": lambda key, t: _streamed(
            interest.RunDailyInterest(ipb.RunDailyInterestRequest(request_id=key, business_date=_day(key)), timeout=t)
        ),
        "OpenAccount": lambda key, t: bank.accounts.OpenAccount(
            apb.OpenAccountRequest(
                request_id=key, customer_id=customer, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
            ),
            timeout=t,
        ),
        "ApplyForLoan": lambda key, t: loans.ApplyForLoan(
            lpb.ApplyForLoanRequest(
                request_id=key, customer_id=customer, account_id=account, principal=eur("100.00"), term_months=6
            ),
            timeout=t,
        ),
    }
    wrong = {}
    for name, call in calls.items():
        for i, deadline in enumerate(DEADLINES * 3):
            code = await _code(call(f"{name.lower()}-{i}", deadline))
            if code not in ALLOWED:
                wrong[f"{name} at {deadline * 1000:g} ms"] = code.name
    assert not wrong, wrong
    noise = [
        r.getMessage() for r in caplog.records if "unhandled error" in r.getMessage() or "Failed to detach" in r.getMessage()
    ]
    assert not noise, noise
