"""The ledger's limit (common.money.MAX_MINOR): every amount and every balance stays within it, and
every computation on minor units stays an exact integer on both engines. Before the limit, a
deposit of 999999999999999.99 and an interest run stored a floating-point balance on SQLite (and
the euro balances summed to 4, not 0); on PostgreSQL the same answered INTERNAL."""

from __future__ import annotations

from decimal import Decimal

import grpc
from grpc import aio

from common.config import Settings
from common.money import MAX_MINOR, Money
from kernel.interest import InterestTier, daily_interest
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, eur
from tests.grpc_assert import error_reason, field_violations
from tests.ledger_checks import broken_ledger

LIMIT = Money("EUR", MAX_MINOR).amount  # "9999999999999.99"
RATE = "0.999999"  # the highest rate a tier may have (below 1, six decimals)


def _accrue(request_id: str) -> apb.AccrueInterestRequest:
    return apb.AccrueInterestRequest(
        request_id=request_id,
        business_date=date_pb2.Date(year=2026, month=6, day=15),
        currency_code="EUR",
        tiers=[apb.InterestTier(annual_rate=RATE)],
        limit=1000,
    )


async def test_an_amount_above_the_limit_is_bad_input(channel: aio.Channel) -> None:
    client = Bank(channel)
    account = (await client.default_account(await client.verified_customer("limit-input"))).account_id
    too_much = apb.DepositRequest(request_id="too-much", account_id=account, amount=eur("10000000000000.00"))
    assert "amount.amount" in await field_violations(client.accounts.Deposit(too_much))


async def test_no_balance_passes_the_limit(channel: aio.Channel, settings: Settings) -> None:
    client = Bank(channel)
    customer = await client.verified_customer("limit-balance")
    rich, other = await client.open(customer, "rich"), await client.open(customer, "other")
    await client.deposit(other, "0.01", "other")
    await client.deposit(rich, str(Decimal(LIMIT) - Decimal("0.01")), "rich")  # the bank's cash account is now at -limit
    refused = await error_reason(
        client.accounts.Deposit(apb.DepositRequest(request_id="one-cent-more", account_id=other, amount=eur("0.01"))),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert (refused.reason, refused.metadata["account_id"]) == ("BALANCE_LIMIT_EXCEEDED", "acc_CASH_EUR")
    await client.accounts.Transfer(
        apb.TransferRequest(request_id="to-the-limit", debit_account_id=other, credit_account_id=rich, amount=eur("0.01"))
    )
    assert (await client.balance(rich))[0] == LIMIT
    past = await error_reason(client.accounts.AccrueInterest(_accrue("past-the-limit")), grpc.StatusCode.FAILED_PRECONDITION)
    assert (past.reason, past.metadata["account_id"]) == ("BALANCE_LIMIT_EXCEEDED", rich), (
        "interest would pass it: refused, whole"
    )
    assert (await client.balance(rich))[0] == LIMIT and not await broken_ledger(settings)


async def test_interest_near_the_limit_is_exact(channel: aio.Channel, settings: Settings) -> None:
    """balance x rate overflows 64 bits here (9e14 x 999999): the SQL splits it and stays exact."""
    client = Bank(channel)
    account = await client.open(await client.verified_customer("limit-interest"), "near")
    await client.deposit(account, "9000000000000.00", "near")
    posted = await client.accounts.AccrueInterest(_accrue("near-the-limit"))
    expected = daily_interest(900_000_000_000_000, (InterestTier(None, Decimal(RATE)),))
    assert posted.interest_posted.amount == Money("EUR", expected).amount == "24657509589.04"
    assert (await client.balance(account))[0] == Money("EUR", 900_000_000_000_000 + expected).amount
    assert not await broken_ledger(settings)
    statement = await agrpc.AccountServiceStub(channel).ListEntries(apb.ListEntriesRequest(account_id=account))
    assert [e.amount.amount for e in statement.entries] == ["9000000000000.00", "24657509589.04"]
