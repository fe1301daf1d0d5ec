"""A request refused for the state it met keeps that refusal: its request_id answers the same
refusal to every identical request, racing it or sent later when the state has changed, and
never makes the change after all. Before, a refused debit gave its key back, and a retry racing
the refusal took money that the loan never recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
from grpc import aio

from common.clock import FixedClock
from common.config import Settings
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from tests.bank_helpers import Bank, bank_on_clock, eur
from tests.grpc_assert import error_reason
from tests.ledger_checks import broken_ledger, broken_loans

CLOCK = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio.Channel]:
    CLOCK.move_to(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    async with bank_on_clock(settings, CLOCK) as channel:
        yield channel


async def _short_borrower(channel: aio.Channel, tag: str) -> tuple[str, str]:
    """A disbursed 1,200.00 loan whose account (a savings account: no overdraft) then holds 50.00
    less one cent: (loan, account)."""
    bank, lending = Bank(channel), lgrpc.LendingServiceStub(channel)
    customer = await bank.verified_customer(tag)
    account = await bank.open(customer, tag)
    applied = await lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id=f"{tag}-a", customer_id=customer, account_id=account, principal=eur("1200.00"), term_months=12
        )
    )
    loan = applied.loan.loan_id
    await lending.ApproveLoan(lpb.ApproveLoanRequest(request_id=f"{tag}-p", loan_id=loan, annual_interest_rate="0.06"))
    await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"{tag}-d", loan_id=loan))
    await bank.accounts.Withdraw(apb.WithdrawRequest(request_id=f"{tag}-w", account_id=account, amount=eur("1150.01")))
    return loan, account


async def _balance(channel: aio.Channel, account_id: str) -> Decimal:
    return Decimal((await Bank(channel).balance(account_id))[0])


async def _sound(settings: Settings) -> None:
    assert await broken_ledger(settings) == {}
    assert await broken_loans(settings) == {}


async def test_a_refused_repayment_answers_its_refusal_for_good(channel: aio.Channel, settings: Settings) -> None:
    lending = lgrpc.LendingServiceStub(channel)
    loan, account = await _short_borrower(channel, "kept")
    repay = lpb.RepayLoanRequest(request_id="kept-r", loan_id=loan, amount=eur("50.00"))
    refused = await error_reason(lending.RepayLoan(repay), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "INSUFFICIENT_FUNDS"
    await Bank(channel).deposit(account, "0.01", "kept-topup")
    again = await error_reason(lending.RepayLoan(repay), grpc.StatusCode.FAILED_PRECONDITION)
    assert again.reason == "INSUFFICIENT_FUNDS", "the same request_id answers the first refusal, now the funds are there"
    assert await _balance(channel, account) == Decimal("50.00"), "nothing was taken"
    assert not (await lending.ListRepayments(lpb.ListRepaymentsRequest(loan_id=loan))).repayments
    fresh = lpb.RepayLoanRequest(request_id="kept-r2", loan_id=loan, amount=eur("50.00"))
    assert (await lending.RepayLoan(fresh)).repayment.status == lpb.REPAYMENT_STATUS_POSTED, "a new request pays"
    assert await _balance(channel, account) == Decimal("0.00")
    await _sound(settings)


async def test_identical_repayments_racing_a_deposit_all_answer_alike_and_take_what_the_loan_records(
    channel: aio.Channel, settings: Settings
) -> None:
    lending, bank = lgrpc.LendingServiceStub(channel), Bank(channel)
    for round_ in range(8):
        loan, account = await _short_borrower(channel, f"race{round_}")
        repay = lpb.RepayLoanRequest(request_id=f"race{round_}-r", loan_id=loan, amount=eur("50.00"))

        async def deposit_soon(tag: str = f"race{round_}-top", to: str = account, delay: float = 0.002 * round_) -> None:
            await asyncio.sleep(delay)
            await bank.deposit(to, "0.01", tag)

        answers = await asyncio.gather(*(lending.RepayLoan(repay) for _ in range(20)), deposit_soon(), return_exceptions=True)
        outcomes = {_outcome(answer) for answer in answers[:20]}
        assert len(outcomes) == 1, f"one request_id, one answer: {outcomes}"
        [outcome] = outcomes
        taken = Decimal("50.00") - await _balance(channel, account)  # 49.99 and the cent deposited
        recorded = sum(
            (
                Decimal(r.amount.amount)
                for r in (await lending.ListRepayments(lpb.ListRepaymentsRequest(loan_id=loan))).repayments
            ),
            Decimal(0),
        )
        assert taken == recorded == (Decimal("50.00") if outcome.startswith("OK") else 0), outcome
        await _sound(settings)


async def test_a_refused_withdrawal_stays_refused_when_the_money_arrives(channel: aio.Channel, settings: Settings) -> None:
    bank = Bank(channel)
    account = await bank.open(await bank.verified_customer("wd"), "wd")  # savings: no overdraft
    out = apb.WithdrawRequest(request_id="wd-1", account_id=account, amount=eur("10.00"))
    assert (await error_reason(bank.accounts.Withdraw(out), grpc.StatusCode.FAILED_PRECONDITION)).reason == "INSUFFICIENT_FUNDS"
    await bank.deposit(account, "10.00", "wd-top")
    assert (await error_reason(bank.accounts.Withdraw(out), grpc.StatusCode.FAILED_PRECONDITION)).reason == "INSUFFICIENT_FUNDS"
    assert await _balance(channel, account) == Decimal("10.00")
    await _sound(settings)


def _outcome(answer: object) -> str:
    if isinstance(answer, grpc.aio.AioRpcError):
        return f"{answer.code().name}: {answer.details()}"
    assert isinstance(answer, lpb.RepayLoanResponse), answer
    return f"OK {answer.repayment.repayment_id} {answer.repayment.status}"
