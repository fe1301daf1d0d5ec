"""Loans and the durable disbursement saga: completion, compensation, an operator's case, and the
process killed at every step and restarted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from grpc import aio

from common import faults
from common.config import Settings
from mesh.embedded import RunningBank
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from services.account.repository import AccountUnits
from tests.bank_helpers import Bank, admin_channel, eur
from tests.conftest import ADMIN_PASSWORD
from tests.grpc_assert import field_violations
from tests.processes import BankProcess

STEPS = ("reserve_funds", "create_disbursement", "transfer_funds", "mark_disbursed")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


async def _approved_loan(channel: aio.Channel, tag: str, amount: str = "2500.00") -> tuple[str, str]:
    client, loans = Bank(channel), lgrpc.LendingServiceStub(channel)
    customer = await client.verified_customer(tag)
    account = (await client.default_account(customer)).account_id
    applied = await loans.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id=f"apply-{tag}", customer_id=customer, account_id=account, principal=eur(amount), term_months=24
        )
    )
    await loans.ApproveLoan(
        lpb.ApproveLoanRequest(request_id=f"approve-{tag}", loan_id=applied.loan.loan_id, annual_interest_rate="0.059")
    )
    return applied.loan.loan_id, account


async def _money(channel: aio.Channel, account: str) -> tuple[Decimal, Decimal, Decimal]:
    """(customer balance, loan book balance, loan book held)."""
    client = Bank(channel)
    balance = Decimal((await client.balance(account))[0])
    t_balance, t_available = (Decimal(x) for x in await client.balance("acc_LOAN_PRINCIPAL_EUR"))
    return balance, t_balance, t_balance - t_available


@pytest.fixture
async def lending(bank: RunningBank, channel: aio.Channel) -> AsyncIterator[lgrpc.LendingServiceStub]:
    yield lgrpc.LendingServiceStub(channel)
    faults.disarm()


async def test_disbursement_completes_and_moves_the_money_once(
    bank: RunningBank, channel: aio.Channel, lending: lgrpc.LendingServiceStub
) -> None:
    loan_id, account = await _approved_loan(channel, "ok")
    loan = (await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="d-ok", loan_id=loan_id))).loan
    assert loan.status == lpb.LOAN_STATUS_DISBURSED and loan.saga_status == lpb.SAGA_STATUS_COMPLETED
    assert [(s.name, s.state) for s in loan.saga_steps] == [(name, "DONE") for name in STEPS]
    again = (await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="d-ok-2", loan_id=loan_id))).loan
    assert again.status == lpb.LOAN_STATUS_DISBURSED
    assert await _money(channel, account) == (Decimal("2500.00"), Decimal("-2500.00"), Decimal("0.00"))
    debits, credits, total = await bank.contexts["account"].resolve(AccountUnits).read(lambda uow: uow.accounts.totals())
    assert debits == credits and total == 0


async def test_a_failing_step_is_compensated_in_reverse(channel: aio.Channel, lending: lgrpc.LendingServiceStub) -> None:
    loan_id, account = await _approved_loan(channel, "comp")
    faults.arm("lending.mark_disbursed")
    loan = (await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="d-comp", loan_id=loan_id))).loan
    assert loan.status == lpb.LOAN_STATUS_DISBURSEMENT_FAILED and loan.saga_status == lpb.SAGA_STATUS_COMPENSATED
    assert [s.state for s in loan.saga_steps] == ["COMPENSATED", "COMPENSATED", "COMPENSATED", "FAILED"]
    assert loan.saga_steps[3].attempts == 3, "the step was retried before giving up"
    assert await _money(channel, account) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00")), "nothing created, lost or held"


async def test_a_compensation_that_keeps_failing_needs_an_operator(
    channel: aio.Channel, lending: lgrpc.LendingServiceStub
) -> None:
    loan_id, account = await _approved_loan(channel, "op")
    faults.arm("lending.mark_disbursed", "lending.reverse")
    loan = (await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="d-op", loan_id=loan_id))).loan
    assert loan.saga_status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR and loan.status == lpb.LOAN_STATUS_DISBURSEMENT_FAILED
    transfer = next(s for s in loan.saga_steps if s.name == "transfer_funds")
    assert transfer.state == "DONE" and "fault injected at lending.reverse" in transfer.last_error
    seen = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan
    assert seen.saga_status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR, "visible through the API"
    balance, book, held = await _money(channel, account)
    assert balance == -book == Decimal("2500.00") and held == 0, "the money is where the log says; nothing leaked"


async def test_bad_input_and_rules(channel: aio.Channel, lending: lgrpc.LendingServiceStub) -> None:
    bad = lpb.ApplyForLoanRequest(customer_id="c", account_id="a", principal=eur("0"), term_months=0)
    assert set(await field_violations(lending.ApplyForLoan(bad))) == {"request_id", "customer_id", "account_id"}
    shaped = lpb.ApplyForLoanRequest(request_id="a", customer_id="cus_1", account_id="acc_1", principal=eur("0"), term_months=0)
    assert set(await field_violations(lending.ApplyForLoan(shaped))) == {"principal.amount", "term_months"}
    loan_id, _ = await _approved_loan(channel, "rules")
    for bad_rate in ("1.5", "NaN", "sNaN", "Infinity", "1e-3", "-0.01", "0"):  # NaN was INTERNAL once (found by fuzzing)
        rate = lpb.ApproveLoanRequest(request_id="r", loan_id=loan_id, annual_interest_rate=bad_rate)
        assert set(await field_violations(lending.ApproveLoan(rate))) == {"annual_interest_rate"}, bad_rate


async def test_an_approval_replays_its_answer_and_a_decimal_rate_is_a_number(
    channel: aio.Channel, lending: lgrpc.LendingServiceStub
) -> None:
    loan_id, _ = await _approved_loan(channel, "replay")  # approved at "0.059" by request "approve-replay"
    again = lpb.ApproveLoanRequest(request_id="approve-replay", loan_id=loan_id, annual_interest_rate="0.059")
    replayed = (await lending.ApproveLoan(again)).loan
    assert (replayed.status, replayed.annual_interest_rate) == (lpb.LOAN_STATUS_APPROVED, "0.059")
    same_rate = lpb.ApproveLoanRequest(request_id="approve-replay-2", loan_id=loan_id, annual_interest_rate="0.0590")
    assert (await lending.ApproveLoan(same_rate)).loan.status == lpb.LOAN_STATUS_APPROVED


async def test_identical_approvals_racing_answer_alike(channel: aio.Channel, lending: lgrpc.LendingServiceStub) -> None:
    client = Bank(channel)
    customer = await client.verified_customer("race")
    account = (await client.default_account(customer)).account_id
    for round_ in range(3):
        applied = await lending.ApplyForLoan(
            lpb.ApplyForLoanRequest(
                request_id=f"apply-race-{round_}",
                customer_id=customer,
                account_id=account,
                principal=eur("900.00"),
                term_months=6,
            )
        )
        approve = lpb.ApproveLoanRequest(
            request_id=f"approve-race-{round_}", loan_id=applied.loan.loan_id, annual_interest_rate="0.07"
        )
        answers = await asyncio.gather(*(lending.ApproveLoan(approve) for _ in range(10)), return_exceptions=True)
        assert {a.loan.status if isinstance(a, lpb.ApproveLoanResponse) else repr(a) for a in answers} == {
            lpb.LOAN_STATUS_APPROVED
        }


CRASH_POINTS = [f"saga.{step}.{moment}" for step in STEPS for moment in ("before", "after")]


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [*CRASH_POINTS, "saga.transfer_funds.compensate"])
async def test_killed_at_every_step_then_restarted(tmp_path: Path, crash_at: str) -> None:
    armed = crash_at + (",lending.mark_disbursed" if crash_at.endswith("compensate") else "")
    first = BankProcess(tmp_path).start()
    try:
        async with admin_channel(first.target) as channel:
            loan_id, account = await _approved_loan(channel, "crash")
    finally:
        first.stop()
    crashing = BankProcess(tmp_path, faults=armed).start()
    async with admin_channel(crashing.target) as channel:
        try:
            await lgrpc.LendingServiceStub(channel).DisburseLoan(lpb.DisburseLoanRequest(request_id="d", loan_id=loan_id))
        except aio.AioRpcError:
            pass
    assert crashing.wait_exit(timeout=30) == 137, crashing.log[-2000:]
    restarted = BankProcess(tmp_path).start()  # resumes unfinished sagas on start
    try:
        async with admin_channel(restarted.target) as channel:
            lending = lgrpc.LendingServiceStub(channel)
            deadline = time.monotonic() + 20
            while (loan := (await lending.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan).saga_status not in (
                lpb.SAGA_STATUS_COMPLETED,
                lpb.SAGA_STATUS_COMPENSATED,
            ):
                assert time.monotonic() < deadline, f"saga stuck in {lpb.SagaStatus.Name(loan.saga_status)}"
                await asyncio.sleep(0.1)
            balance, book, held = await _money(channel, account)
            assert held == 0, "the loan book hold never leaks"
            assert balance == -book, "no money created or lost"
            if loan.saga_status == lpb.SAGA_STATUS_COMPLETED:
                assert loan.status == lpb.LOAN_STATUS_DISBURSED and balance == Decimal("2500.00")
            else:
                assert loan.status == lpb.LOAN_STATUS_DISBURSEMENT_FAILED and balance == 0
    finally:
        restarted.stop()


async def test_approval_writes_the_repayment_schedule(channel: aio.Channel, lending: lgrpc.LendingServiceStub) -> None:
    loan_id, _ = await _approved_loan(channel, "schedule", amount="2500.00")
    loan = (await lending.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan
    # 2500.00 at 5.9 % over 24 months, 30/360: P·r / (1 - (1 + r)^-n) = 110.6889... -> 110.68 (rounded down)
    assert loan.installment_amount.amount == "110.68" and loan.first_due_date.year > 0
    installments, token = [], ""
    while True:
        page = await lending.ListInstallments(lpb.ListInstallmentsRequest(loan_id=loan_id, page_size=10, page_token=token))
        installments.extend(page.installments)
        token = page.next_page_token
        if not token:
            break
    assert [i.number for i in installments] == list(range(1, 25)), "each installment once, in order, across pages"
    assert installments[0].interest.amount == "12.29"  # 2500.00 x 0.059 / 12 = 12.2916...
    assert installments[0].due_date == loan.first_due_date
    assert sum(Decimal(i.principal.amount) for i in installments) == Decimal("2500.00")
    assert all(i.total.amount == "110.68" for i in installments[:-1])
    assert installments[-1].principal_after.amount == "0.00"
    assert all(Decimal(i.total.amount) == Decimal(i.principal.amount) + Decimal(i.interest.amount) for i in installments)
    applied = await lending.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id="apply-unscheduled",
            customer_id=loan.customer_id,
            account_id=loan.account_id,
            principal=eur("100.00"),
            term_months=6,
        )
    )
    none_yet = await lending.ListInstallments(lpb.ListInstallmentsRequest(loan_id=applied.loan.loan_id))
    assert list(none_yet.installments) == [] and not applied.loan.HasField("installment_amount")
