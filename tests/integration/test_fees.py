"""minimum_balance was shown on accounts and did nothing. It decides the monthly maintenance fee:
waived for a month in which the balance never fell below it, charged otherwise (once per account
and month, set-based, into the bank's fee income account); an account that cannot pay it within its
floor is left unpaid, never pushed past it. It never refuses a movement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from grpc import aio

from common.clock import FixedClock
from common.config import Settings
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, bank_on_clock, eur
from tests.grpc_assert import error_reason, field_violations
from tests.ledger_checks import broken_ledger

MAY = date_pb2.Date(year=2026, month=5, day=1)
CLOCK = FixedClock(datetime(2026, 5, 10, 9, 0, tzinfo=UTC))


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio.Channel]:
    """A bank whose clock the test moves through May into June."""
    CLOCK.move_to(datetime(2026, 5, 10, 9, 0, tzinfo=UTC))
    async with bank_on_clock(settings, CLOCK) as channel:
        yield channel


def _on(day: int, month: int = 5) -> None:
    CLOCK.move_to(datetime(2026, month, day, 12, 0, tzinfo=UTC))


async def _charge(bank: Bank, key: str, month: date_pb2.Date = MAY, limit: int = 2) -> list[apb.ChargeMonthlyFeesResponse]:
    chunks, after = [], ""
    while True:
        chunk = await bank.accounts.ChargeMonthlyFees(
            apb.ChargeMonthlyFeesRequest(
                request_id=f"{key}-{after or 'start'}", month=month, currency_code="EUR", after_account_id=after, limit=limit
            )
        )
        chunks.append(chunk)
        if chunk.done:
            return chunks
        after = chunk.last_account_id


async def test_the_fee_is_charged_for_a_month_below_the_minimum_and_waived_otherwise(
    channel: aio.Channel, settings: Settings
) -> None:
    bank = Bank(channel)
    customer = await bank.verified_customer("fees")
    business = apb.ACCOUNT_TYPE_BUSINESS_CHECKING  # fee 15.00, minimum 1,000.00, overdraft 5,000.00
    dipped, steady, empty, broke = [
        await bank.open(customer, f"fees-{n}", business) for n in ("dipped", "steady", "empty", "broke")
    ]
    premium = await bank.open(customer, "fees-premium", apb.ACCOUNT_TYPE_PREMIUM_CHECKING)  # no fee
    for account in (dipped, steady):
        await bank.deposit(account, "2000.00", f"{account}-in")
    await bank.accounts.Withdraw(apb.WithdrawRequest(request_id="broke-out", account_id=broke, amount=eur("4990.00")))
    _on(20)
    await bank.accounts.Withdraw(apb.WithdrawRequest(request_id="dip", account_id=dipped, amount=eur("1100.00")))  # 900.00: below
    _on(21)
    await bank.deposit(dipped, "1100.00", "dip-back")  # back to 2,000.00, but it fell below in May
    _on(25)
    refused = apb.ChargeMonthlyFeesRequest(request_id="too-early", month=MAY, currency_code="EUR", limit=10)
    assert "month" in await field_violations(bank.accounts.ChargeMonthlyFees(refused)), "May has not ended"
    _on(2, month=6)
    chunks = await _charge(bank, "may")
    assert sum(c.processed for c in chunks) == 4, "the four accounts with a fee (not the premium one)"
    assert (sum(c.charged for c in chunks), sum(c.unpaid for c in chunks)) == (2, 1)
    assert sum(float(c.fees_charged.amount) for c in chunks) == 30.00
    balances = {a: (await bank.balance(a))[0] for a in (dipped, steady, empty, broke, premium)}
    assert balances == {dipped: "1985.00", steady: "2000.00", empty: "-15.00", broke: "-4990.00", premium: "0.00"}
    assert (await bank.balance("acc_FEE_INCOME_EUR"))[0] == "30.00"
    again = await _charge(bank, "may-again", limit=3)
    assert sum(c.charged for c in again) == 2 and (await bank.balance(dipped))[0] == "1985.00", "once per account and month"
    assert not await broken_ledger(settings)


async def test_the_minimum_balance_never_refuses_a_movement(channel: aio.Channel) -> None:
    bank = Bank(channel)
    account = await bank.open(
        await bank.verified_customer("fees-free"), "fees-free", apb.ACCOUNT_TYPE_PREMIUM_CHECKING
    )  # minimum 5,000.00
    await bank.deposit(account, "100.00", "fees-free")
    moved = await bank.accounts.Withdraw(apb.WithdrawRequest(request_id="below-minimum", account_id=account, amount=eur("90.00")))
    assert moved.transfer.amount.amount == "90.00"


async def test_chunks_never_overlap_whatever_cursor_a_caller_sends(channel: aio.Channel, settings: Settings) -> None:
    """A month's chunks are recorded by their ranges: a new chunk stops where a recorded one
    begins, and a cursor inside a recorded chunk is refused (its fees are not charged twice, and
    the answer is a refusal, never INTERNAL)."""
    bank = Bank(channel)
    customer = await bank.verified_customer("fees-cursor")
    accounts = sorted([await bank.open(customer, f"fees-c{n}", apb.ACCOUNT_TYPE_BUSINESS_CHECKING) for n in range(5)])
    _on(2, month=6)
    later = apb.ChargeMonthlyFeesRequest(
        request_id="from-2", month=MAY, currency_code="EUR", after_account_id=accounts[1], limit=2
    )
    assert (await bank.accounts.ChargeMonthlyFees(later)).last_account_id == accounts[3]
    inside = apb.ChargeMonthlyFeesRequest(
        request_id="inside", month=MAY, currency_code="EUR", after_account_id=accounts[2], limit=9
    )
    refused = await error_reason(bank.accounts.ChargeMonthlyFees(inside), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "FEE_CHUNK_OVERLAP"
    assert dict(refused.metadata) == {"chunk_after_account_id": accounts[1], "chunk_last_account_id": accounts[3]}
    first = await bank.accounts.ChargeMonthlyFees(
        apb.ChargeMonthlyFeesRequest(request_id="from-start", month=MAY, currency_code="EUR", limit=100)
    )
    assert (first.last_account_id, first.done) == (accounts[1], False), "stops where the recorded chunk begins"
    rest = await _charge(bank, "rest", limit=100)
    assert [c.last_account_id for c in rest] == [accounts[1], accounts[3], accounts[4]]
    assert rest[-1].done
    assert {a: (await bank.balance(a))[0] for a in accounts} == dict.fromkeys(accounts, "-15.00"), "one fee each"
    assert (await bank.balance("acc_FEE_INCOME_EUR"))[0] == "75.00"
    assert not await broken_ledger(settings)


async def test_a_request_id_sent_again_with_another_body_is_refused(channel: aio.Channel) -> None:
    """ChargeMonthlyFees and AccrueInterest hold a request_id to its body, as every state change
    does: sent again with another month, currency or date it is IDEMPOTENCY_KEY_REUSED, not a
    second, different chunk answered OK; sent again alike, it answers alike."""
    bank = Bank(channel)
    await bank.open(await bank.verified_customer("fees-key"), "fees-key", apb.ACCOUNT_TYPE_BUSINESS_CHECKING)
    _on(2, month=6)
    fees = apb.ChargeMonthlyFeesRequest(request_id="fees-key", month=MAY, currency_code="EUR", limit=10)
    first = await bank.accounts.ChargeMonthlyFees(fees)
    assert await bank.accounts.ChargeMonthlyFees(fees) == first
    for other in (
        apb.ChargeMonthlyFeesRequest(request_id="fees-key", month=MAY, currency_code="USD", limit=10),
        apb.ChargeMonthlyFeesRequest(
            request_id="fees-key", month=date_pb2.Date(year=2026, month=4, day=1), currency_code="EUR", limit=10
        ),
    ):
        assert (
            await error_reason(bank.accounts.ChargeMonthlyFees(other), grpc.StatusCode.ALREADY_EXISTS)
        ).reason == "IDEMPOTENCY_KEY_REUSED"
    tier = apb.InterestTier(annual_rate="0.01")
    accrue = apb.AccrueInterestRequest(
        request_id="accrue-key",
        business_date=date_pb2.Date(year=2026, month=6, day=1),
        currency_code="EUR",
        tiers=[tier],
        limit=10,
    )
    answered = await bank.accounts.AccrueInterest(accrue)
    assert await bank.accounts.AccrueInterest(accrue) == answered
    accrue.business_date.day = 2
    assert (
        await error_reason(bank.accounts.AccrueInterest(accrue), grpc.StatusCode.ALREADY_EXISTS)
    ).reason == "IDEMPOTENCY_KEY_REUSED"
