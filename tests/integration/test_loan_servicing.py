"""A disbursed loan is serviced: repayments allocated to interest then principal, an overpayment
refused, a payoff at today's quote, and the daily collection that takes what is due or leaves the
installment overdue with its late fee. The money lands in the bank's loan accounts, and the
loan invariants (tests/ledger_checks.py) hold after each story."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import grpc
import pytest
from grpc import aio

from common.clock import FixedClock
from common.config import Settings
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.notification.v1 import notification_service_pb2 as npb
from ogpgy.notification.v1 import notification_service_pb2_grpc as ngrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, bank_on_clock, eur, eventually
from tests.grpc_assert import error_reason
from tests.ledger_checks import broken_ledger, broken_loans

CLOCK = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))  # approved today: the first installment is due on 1 April


def _on(day: int, month: int) -> None:
    CLOCK.move_to(datetime(2026, month, day, 12, 0, tzinfo=UTC))


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio.Channel]:
    CLOCK.move_to(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    async with bank_on_clock(settings, CLOCK) as channel:
        yield channel


async def _disbursed(channel: aio.Channel, tag: str) -> tuple[str, str]:
    """1,200.00 at 6 % over 12 months, paid into a fresh customer's account: (loan, account).
    Its installments: 103.27 (the first: 6.00 interest, 97.27 principal), ..., the last 103.33."""
    bank, lending = Bank(channel), lgrpc.LendingServiceStub(channel)
    customer = await bank.verified_customer(tag)
    account = (await bank.default_account(customer)).account_id
    applied = await lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id=f"{tag}-a", customer_id=customer, account_id=account, principal=eur("1200.00"), term_months=12
        )
    )
    loan_id = applied.loan.loan_id
    await lending.ApproveLoan(lpb.ApproveLoanRequest(request_id=f"{tag}-p", loan_id=loan_id, annual_interest_rate="0.06"))
    disbursed = await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"{tag}-d", loan_id=loan_id))
    assert disbursed.loan.status == lpb.LOAN_STATUS_DISBURSED
    return loan_id, account


async def _balance(channel: aio.Channel, account_id: str) -> Decimal:
    return Decimal((await Bank(channel).balance(account_id))[0])


async def _sound(settings: Settings) -> None:
    assert await broken_ledger(settings) == {}
    assert await broken_loans(settings) == {}


async def _collect(channel: aio.Channel, day: date, tag: str) -> lpb.CollectionRun:
    request = lpb.RunCollectionRequest(
        request_id=tag, business_date=date_pb2.Date(year=day.year, month=day.month, day=day.day), currency_code="EUR"
    )
    runs = [r.run async for r in lgrpc.LendingServiceStub(channel).RunCollection(request)]
    return runs[-1]


async def test_a_repayment_pays_interest_then_principal_once_and_never_more_than_the_payoff(
    channel: aio.Channel, settings: Settings
) -> None:
    lending = lgrpc.LendingServiceStub(channel)
    loan_id, account = await _disbursed(channel, "repay")
    _on(1, 4)  # the first installment is due
    repay = lpb.RepayLoanRequest(request_id="repay-1", loan_id=loan_id, amount=eur("50.00"))
    paid = await lending.RepayLoan(repay)
    r = paid.repayment
    assert (r.status, r.interest.amount, r.principal.amount, r.late_fees.amount) == (
        lpb.REPAYMENT_STATUS_POSTED,
        "6.00",
        "44.00",
        "0.00",
    ), "the month's interest first, then principal"
    assert paid.loan.outstanding_principal.amount == "1156.00" and paid.loan.overdue_amount.amount == "53.27"
    assert (await lending.RepayLoan(repay)).repayment.repayment_id == r.repayment_id, "a retry is the same repayment"
    assert await _balance(channel, account) == Decimal("1150.00"), "taken once"
    assert await _balance(channel, "acc_INTEREST_INCOME_EUR") == Decimal("6.00")

    racing = lpb.RepayLoanRequest(request_id="repay-race", loan_id=loan_id, amount=eur("10.00"))
    first, second = await asyncio.gather(lending.RepayLoan(racing), lending.RepayLoan(racing))
    assert first.repayment.repayment_id == second.repayment.repayment_id, "a retry racing its original is the same repayment"
    assert await _balance(channel, account) == Decimal("1140.00"), "taken once"
    quote = (await lending.GetPayoffQuote(lpb.GetPayoffQuoteRequest(loan_id=loan_id))).quote
    assert quote.principal.amount == "1146.00" and quote.interest.amount == "0.00", "on a due date the period's interest is paid"
    too_much = lpb.RepayLoanRequest(request_id="repay-2", loan_id=loan_id, amount=eur("1146.01"))
    refused = await error_reason(lending.RepayLoan(too_much), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "AMOUNT_EXCEEDS_PAYOFF"

    await Bank(channel).accounts.Withdraw(apb.WithdrawRequest(request_id="repay-out", account_id=account, amount=eur("1130.00")))
    short = lpb.RepayLoanRequest(request_id="repay-3", loan_id=loan_id, amount=eur("600.00"))  # 10.00 + 500.00 overdraft
    refused = await error_reason(lending.RepayLoan(short), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "INSUFFICIENT_FUNDS"
    listed = await lending.ListRepayments(lpb.ListRepaymentsRequest(loan_id=loan_id))
    assert [x.repayment_id for x in listed.repayments] == [r.repayment_id, first.repayment.repayment_id], (
        "a refused one leaves nothing"
    )
    assert (await lending.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan.outstanding_principal.amount == "1146.00"
    await _sound(settings)


async def test_a_payoff_at_todays_quote_waives_later_interest_and_closes_the_loan(
    channel: aio.Channel, settings: Settings
) -> None:
    lending = lgrpc.LendingServiceStub(channel)
    loan_id, account = await _disbursed(channel, "payoff")
    await Bank(channel).deposit(account, "10.00", "payoff-extra")
    _on(16, 3)  # 15 days (30/360) into the first period: half its 6.00 interest
    quote = (await lending.GetPayoffQuote(lpb.GetPayoffQuoteRequest(loan_id=loan_id))).quote
    assert (quote.amount.amount, quote.principal.amount, quote.interest.amount) == ("1203.00", "1200.00", "3.00")
    stale = lpb.PayOffLoanRequest(request_id="off-stale", loan_id=loan_id, amount=eur("1202.00"))
    refused = await error_reason(lending.PayOffLoan(stale), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "PAYOFF_AMOUNT_CHANGED"

    off = await lending.PayOffLoan(lpb.PayOffLoanRequest(request_id="off", loan_id=loan_id, amount=quote.amount))
    assert off.loan.status == lpb.LOAN_STATUS_PAID_OFF and off.loan.outstanding_principal.amount == "0.00"
    assert off.repayment.kind == lpb.REPAYMENT_KIND_PAYOFF and Decimal(off.repayment.waived_interest.amount) > 0
    assert await _balance(channel, account) == Decimal("7.00")
    replay = await lending.PayOffLoan(lpb.PayOffLoanRequest(request_id="off", loan_id=loan_id, amount=quote.amount))
    assert replay.repayment == off.repayment, "a retry of the payoff gets its answer, not LOAN_NOT_ACTIVE"
    again = lpb.RepayLoanRequest(request_id="off-after", loan_id=loan_id, amount=eur("1.00"))
    refused = await error_reason(lending.RepayLoan(again), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "LOAN_NOT_ACTIVE"
    customer = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan.customer_id
    notifications = ngrpc.NotificationServiceStub(channel)

    async def told() -> bool:
        listed = await notifications.ListNotifications(npb.ListNotificationsRequest(customer_id=customer))
        return "LOAN_PAID_OFF" in {n.kind for n in listed.notifications}

    await eventually(told, what="the LOAN_PAID_OFF notification")
    await _sound(settings)


async def test_a_payoff_on_a_due_date_after_a_months_31st_owes_that_periods_interest_alone(
    channel: aio.Channel, settings: Settings
) -> None:
    """Approved and disbursed on 31 December, paid off on 31 January: 31 Dec -> 31 Jan is 30 days
    (30/360), 1200.00 * 6 % * 30/360 = 6.00. The period due 28 February begins on 31 January, as
    the schedule recorded it, so none of it has accrued (it was 6.37 when it began on 28 January)."""
    CLOCK.move_to(datetime(2025, 12, 31, 9, 0, tzinfo=UTC))
    lending = lgrpc.LendingServiceStub(channel)
    loan_id, account = await _disbursed(channel, "payoff-31")
    await Bank(channel).deposit(account, "10.00", "payoff-31-extra")
    CLOCK.move_to(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    quote = (await lending.GetPayoffQuote(lpb.GetPayoffQuoteRequest(loan_id=loan_id))).quote
    assert (quote.amount.amount, quote.principal.amount, quote.interest.amount) == ("1206.00", "1200.00", "6.00")
    off = await lending.PayOffLoan(lpb.PayOffLoanRequest(request_id="off-31", loan_id=loan_id, amount=quote.amount))
    assert off.loan.status == lpb.LOAN_STATUS_PAID_OFF and off.repayment.interest.amount == "6.00"
    assert await _balance(channel, account) == Decimal("4.00")
    await _sound(settings)


async def test_the_collection_takes_what_is_due_or_leaves_it_overdue_with_its_late_fee_once(
    channel: aio.Channel, settings: Settings
) -> None:
    lending, bank = lgrpc.LendingServiceStub(channel), Bank(channel)
    paying, _ = await _disbursed(channel, "col-paying")
    short, short_account = await _disbursed(channel, "col-short")
    await bank.accounts.Withdraw(
        apb.WithdrawRequest(request_id="col-out", account_id=short_account, amount=eur("1700.00"))
    )  # to the overdraft's end
    _on(1, 4)
    run = await _collect(channel, date(2026, 4, 1), "col-1")
    assert run.status == lpb.COLLECTION_RUN_STATUS_COMPLETED and run.processed == run.total == 2
    assert run.collected.amount == "103.27", "one installment, from the account that could pay it"
    again = lpb.RunCollectionRequest(
        request_id="col-1b", business_date=date_pb2.Date(year=2026, month=4, day=1), currency_code="EUR"
    )
    refused = await error_reason(_drain(lending.RunCollection(again)), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "COLLECTION_RUN_ALREADY_COMPLETED"

    paid = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=paying))).loan
    assert paid.overdue_amount.amount == "0.00" and paid.outstanding_principal.amount == "1102.73"
    _on(11, 4)
    late = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=short))).loan
    assert (late.days_in_arrears, late.overdue_amount.amount) == (10, "118.27"), "103.27 and the 15.00 late fee"
    first = (await lending.ListInstallments(lpb.ListInstallmentsRequest(loan_id=short))).installments[0]
    assert first.overdue_since == date_pb2.Date(year=2026, month=4, day=1) and first.late_fee.amount == "15.00"

    await bank.deposit(short_account, "200.00", "col-back")
    run = await _collect(channel, date(2026, 4, 11), "col-2")
    assert run.collected.amount == "118.27", "the overdue installment and its fee, once"
    caught_up = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=short))).loan
    assert (caught_up.days_in_arrears, caught_up.overdue_amount.amount) == (0, "0.00")
    assert await _balance(channel, "acc_PENALTY_INCOME_EUR") == Decimal("15.00")
    customer = caught_up.customer_id
    notifications = ngrpc.NotificationServiceStub(channel)

    async def told() -> bool:
        listed = await notifications.ListNotifications(npb.ListNotificationsRequest(customer_id=customer))
        return {"INSTALLMENT_OVERDUE", "LOAN_REPAID"} <= {n.kind for n in listed.notifications}

    await eventually(told, what="the overdue and repaid notifications")
    await _sound(settings)


async def _drain(stream: AsyncIterator[lpb.RunCollectionResponse]) -> None:
    async for _ in stream:
        pass
