"""The operators' console for sagas and arrears, over gRPC on a real bank (SQLite and PostgreSQL):
a disbursement saga driven to FAILED_NEEDS_OPERATOR (the last step and the reversal fail), listed
by filter and page, retried (the loan disbursed once) or compensated (the money back once, four
eyes above the operators' amount), two admins racing, a non-admin refused, the reasons in the
audit trail; and the loans in arrears listed by filter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
from grpc import aio

from common import faults
from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank, start_embedded
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from tests.bank_helpers import Bank, create_user, eur, eventually
from tests.conftest import issue_token
from tests.grpc_assert import error_reason, field_violations
from tests.ledger_checks import broken_ledger, broken_loans

CLOCK = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
FOUR_EYES_ABOVE = {"EUR": 100_000}  # 1,000.00: a 2,500.00 loan's compensation needs two admins, 500.00 one
FAILED = "state = FAILED_NEEDS_OPERATOR"
PASSWORD = "operator-pass-1234"


@dataclass
class Console:
    bank: RunningBank
    settings: Settings
    admin: lgrpc.LendingServiceStub  # the first admin
    other: lgrpc.LendingServiceStub  # a second admin
    customer: lgrpc.LendingServiceStub  # a customer (no admin)
    channel: aio.Channel  # the first admin's
    identity: igrpc.IdentityServiceStub
    admin_id: str
    other_id: str


@pytest.fixture
async def console(settings: Settings) -> AsyncIterator[Console]:
    CLOCK.move_to(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    tuned = settings.model_copy(update={"operator_four_eyes_minor": FOUR_EYES_ABOVE})

    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, CLOCK)

    bank = await start_embedded(tuned, customize=movable)
    try:
        async with bearer_channel(bank.target, await issue_token(bank.target)) as channel:
            identity = igrpc.IdentityServiceStub(channel)
            other_id = await create_user(identity, "second.admin", ipb.ROLE_ADMIN, PASSWORD)
            customer_id = await Bank(channel).verified_customer("console-customer")
            await create_user(identity, "a.customer", ipb.ROLE_CUSTOMER, PASSWORD, customer_id)
            users = await identity.ListUsers(ipb.ListUsersRequest())
            admin_id = next(u.user_id for u in users.users if u.username == "admin")
            async with (
                bearer_channel(bank.target, await issue_token(bank.target, "second.admin", PASSWORD)) as other,
                bearer_channel(bank.target, await issue_token(bank.target, "a.customer", PASSWORD)) as customer,
            ):
                yield Console(
                    bank,
                    tuned,
                    lgrpc.LendingServiceStub(channel),
                    lgrpc.LendingServiceStub(other),
                    lgrpc.LendingServiceStub(customer),
                    channel,
                    identity,
                    admin_id,
                    other_id,
                )
    finally:
        faults.disarm()
        await bank.stop(grace=1)


async def _approved(c: Console, tag: str, amount: str) -> tuple[str, str]:
    bank = Bank(c.channel)
    customer = await bank.verified_customer(tag)
    account = (await bank.default_account(customer)).account_id
    applied = await c.admin.ApplyForLoan(
        lpb.ApplyForLoanRequest(
            request_id=f"{tag}-a", customer_id=customer, account_id=account, principal=eur(amount), term_months=12
        )
    )
    loan_id = applied.loan.loan_id
    await c.admin.ApproveLoan(lpb.ApproveLoanRequest(request_id=f"{tag}-p", loan_id=loan_id, annual_interest_rate="0.06"))
    return loan_id, account


async def _stopped(c: Console, tag: str, amount: str = "2500.00") -> tuple[str, str, str]:
    """A loan whose disbursement stopped FAILED_NEEDS_OPERATOR: its last step failed, then the
    reversal of the transfer kept failing, so the money is in the customer's account. (saga, loan, account)."""
    loan_id, account = await _approved(c, tag, amount)
    faults.arm("lending.mark_disbursed", "lending.reverse")
    try:
        loan = (await c.admin.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"{tag}-d", loan_id=loan_id))).loan
    finally:
        faults.disarm()
    assert loan.saga_status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR and loan.status == lpb.LOAN_STATUS_DISBURSEMENT_FAILED
    return f"sag-{loan_id}", loan_id, account


async def _money(c: Console, account: str) -> tuple[Decimal, Decimal, Decimal]:
    """(customer balance, loan book balance, loan book held)."""
    bank = Bank(c.channel)
    balance = Decimal((await bank.balance(account))[0])
    book, available = (Decimal(x) for x in await bank.balance("acc_LOAN_PRINCIPAL_EUR"))
    return balance, book, book - available


async def _sound(c: Console) -> None:
    assert await broken_ledger(c.settings) == {}, "the books balance: every movement debits and credits once"
    assert await broken_loans(c.settings) == {}


async def _listed(stub: lgrpc.LendingServiceStub, where: str, size: int = 1) -> list[lpb.Saga]:
    request, found = lpb.ListSagasRequest(filter=where, page_size=size), []
    while True:
        page = await stub.ListSagas(request)
        assert len(page.sagas) <= size
        found += list(page.sagas)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def test_failed_sagas_are_listed_by_filter_and_page_and_a_retry_disburses_once(console: Console) -> None:
    c = console
    stopped = [await _stopped(c, f"list-{n}") for n in range(3)]
    done_loan, _ = await _approved(c, "list-ok", "300.00")
    await c.admin.DisburseLoan(lpb.DisburseLoanRequest(request_id="list-ok-d", loan_id=done_loan))

    failed = await _listed(c.admin, FAILED)
    assert [s.saga_id for s in failed] == sorted(s for s, _, _ in stopped), "every failed saga once, page by page"
    saga = failed[0]
    assert saga.saga_type == "loan-disbursement" and saga.amount == eur("2500.00") and saga.loan_id
    assert [(s.name, s.state) for s in saga.steps][-1] == ("mark_disbursed", "FAILED")
    assert [s.saga_id for s in await _listed(c.admin, 'state = COMPLETED AND saga_type = "loan-disbursement"')] == [
        f"sag-{done_loan}"
    ]
    assert await _listed(c.admin, f'{FAILED} AND update_time > "2099-01-01T00:00:00Z"') == []
    assert set(await field_violations(c.admin.ListSagas(lpb.ListSagasRequest(filter="state = LOST")))) == {"filter"}
    first = await c.admin.ListSagas(lpb.ListSagasRequest(filter=FAILED, page_size=1))
    other_query = lpb.ListSagasRequest(filter="state = COMPLETED", page_size=1, page_token=first.next_page_token)
    assert set(await field_violations(c.admin.ListSagas(other_query))) == {"page_token"}, "a token belongs to its filter"

    saga_id, loan_id, account = stopped[0]
    before = await _money(c, account)
    assert before == (Decimal("2500.00"), Decimal("-7800.00"), Decimal("0.00")), "three failed, one done: the money moved"
    retry = lpb.RetrySagaRequest(request_id="retry-1", saga_id=saga_id, reason="mark_disbursed fixed (INC-42)")
    retried = (await c.admin.RetrySaga(retry)).saga
    assert retried.status == lpb.SAGA_STATUS_COMPLETED and [s.state for s in retried.steps] == ["DONE"] * 4
    assert retried.steps[3].attempts == 1, "its attempts started again"
    loan = (await c.admin.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan
    assert loan.status == lpb.LOAN_STATUS_DISBURSED
    assert (await c.admin.RetrySaga(retry)).saga.status == lpb.SAGA_STATUS_COMPLETED, "a replay answers the same"
    reused = lpb.RetrySagaRequest(request_id="retry-1", saga_id=saga_id, reason="another reason")
    assert (await error_reason(c.admin.RetrySaga(reused), grpc.StatusCode.ALREADY_EXISTS)).reason == "IDEMPOTENCY_KEY_REUSED"
    again = lpb.RetrySagaRequest(request_id="retry-2", saga_id=saga_id, reason="again")
    refused = await error_reason(c.admin.RetrySaga(again), grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "SAGA_NOT_FAILED" and refused.metadata["status"] == "COMPLETED"
    assert await _money(c, account) == before, "disbursed once: the retry finished what the transfer did, moving nothing again"
    assert [s.saga_id for s in await _listed(c.admin, FAILED)] == sorted(s for s, _, _ in stopped[1:])
    assert await broken_ledger(c.settings) == {}, "the books balance"
    gap = {"loan book differing from the principal outstanding": [("acc_LOAN_PRINCIPAL_EUR", -780000, 280000)]}
    assert await broken_loans(c.settings) == gap, "the retried loan is outstanding; only the two still stopped are not"


async def test_a_compensation_above_the_amount_needs_a_second_admin_and_moves_the_money_back_once(console: Console) -> None:
    c = console
    saga_id, loan_id, account = await _stopped(c, "comp")
    first = (
        await c.admin.CompensateSaga(lpb.CompensateSagaRequest(request_id="comp-1", saga_id=saga_id, reason="customer withdrew"))
    ).saga
    assert first.status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR, "the first admin's approval waits"
    assert (first.pending_action, first.first_approver) == ("COMPENSATE", c.admin_id)
    same = lpb.CompensateSagaRequest(request_id="comp-2", saga_id=saga_id, reason="customer withdrew, really")
    assert (await c.admin.CompensateSaga(same)).saga.first_approver == c.admin_id, "the same admin again changes nothing"
    assert await _money(c, account) == (Decimal("2500.00"), Decimal("-2500.00"), Decimal("0.00")), "nothing moved yet"

    second = lpb.CompensateSagaRequest(request_id="comp-3", saga_id=saga_id, reason="four eyes: agreed")
    done = (await c.other.CompensateSaga(second)).saga
    assert done.status == lpb.SAGA_STATUS_COMPENSATED and done.pending_action == ""
    assert [s.state for s in done.steps] == ["COMPENSATED", "COMPENSATED", "COMPENSATED", "FAILED"]
    assert await _money(c, account) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00")), "the money back, once"
    assert (await c.other.CompensateSaga(second)).saga.status == lpb.SAGA_STATUS_COMPENSATED, "a replay answers the same"
    late = lpb.CompensateSagaRequest(request_id="comp-4", saga_id=saga_id, reason="late")
    assert (await error_reason(c.admin.CompensateSaga(late), grpc.StatusCode.FAILED_PRECONDITION)).reason == "SAGA_NOT_FAILED"
    loan = (await c.admin.GetLoan(lpb.GetLoanRequest(loan_id=loan_id))).loan
    assert loan.status == lpb.LOAN_STATUS_DISBURSEMENT_FAILED
    await _sound(c)

    async def recorded() -> bool:
        trail = await c.identity.ListAuditEvents(ipb.ListAuditEventsRequest(resource=saga_id))
        return {(e.operation, e.actor, e.reason) for e in trail.audit_events} >= {
            ("CompensateSaga", c.admin_id, "customer withdrew"),
            ("CompensateSaga", c.other_id, "four eyes: agreed"),
        }

    await eventually(recorded, what="the operators and their reasons in the audit trail")


async def test_two_admins_acting_at_once_exactly_one_acts_and_a_customer_is_refused(console: Console) -> None:
    c = console
    saga_id, _, account = await _stopped(c, "race", "500.00")  # below the amount: one admin compensates
    retry = c.admin.RetrySaga(lpb.RetrySagaRequest(request_id="race-r", saga_id=saga_id, reason="retry it"))
    compensate = c.other.CompensateSaga(lpb.CompensateSagaRequest(request_id="race-c", saga_id=saga_id, reason="undo it"))
    answers = await asyncio.gather(retry, compensate, return_exceptions=True)
    won = [a for a in answers if not isinstance(a, BaseException)]
    lost = [a for a in answers if isinstance(a, aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, answers
    assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION and "FAILED_NEEDS_OPERATOR" in str(lost[0].details())
    status = won[0].saga.status
    balance = (await _money(c, account))[0]
    expected = {lpb.SAGA_STATUS_COMPLETED: Decimal("500.00"), lpb.SAGA_STATUS_COMPENSATED: Decimal("0.00")}
    assert balance == expected[status], "the winner's outcome, once"
    await _sound(c)

    for call in (
        c.customer.ListSagas(lpb.ListSagasRequest()),
        c.customer.RetrySaga(lpb.RetrySagaRequest(request_id="x-1", saga_id=saga_id, reason="me")),
        c.customer.CompensateSaga(lpb.CompensateSagaRequest(request_id="x-2", saga_id=saga_id, reason="me")),
        c.customer.ListLoansInArrears(lpb.ListLoansInArrearsRequest()),
    ):
        await error_reason(call, grpc.StatusCode.PERMISSION_DENIED)


async def test_loans_in_arrears_are_listed_by_filter_and_page(console: Console) -> None:
    c = console
    loans = []
    for tag in ("late", "later", "paid"):  # 1,200.00 at 6 % over 12 months: 103.27 due on the 1st of each month
        loan_id, _ = await _approved(c, tag, "1200.00")
        await c.admin.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"{tag}-d", loan_id=loan_id))
        loans.append(loan_id)
    late, later, paid = loans
    CLOCK.move_to(datetime(2026, 5, 10, 12, 0, tzinfo=UTC))  # April's and May's installments are due
    await c.admin.RepayLoan(lpb.RepayLoanRequest(request_id="later-r", loan_id=later, amount=eur("103.27")))  # April's
    await c.admin.RepayLoan(lpb.RepayLoanRequest(request_id="paid-r", loan_id=paid, amount=eur("206.54")))  # both

    async def arrears(where: str) -> list[lpb.Loan]:
        request, found = lpb.ListLoansInArrearsRequest(filter=where, page_size=1), []
        while True:
            page = await c.admin.ListLoansInArrears(request)
            found += list(page.loans)
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    every = await arrears("")
    assert [loan.loan_id for loan in every] == [late, later], "a loan paid up is not in arrears"
    assert [(loan.days_in_arrears, loan.overdue_amount.amount) for loan in every] == [(39, "206.54"), (9, "103.27")]
    for loan in every:
        seen = (await c.admin.GetLoan(lpb.GetLoanRequest(loan_id=loan.loan_id))).loan
        assert (seen.days_in_arrears, seen.overdue_amount) == (loan.days_in_arrears, loan.overdue_amount), "as its view says"
    assert [loan.loan_id for loan in await arrears("days_past_due > 30")] == [late]
    assert [loan.loan_id for loan in await arrears('days_past_due > 5 AND currency = "EUR"')] == [late, later]
    assert [loan.loan_id for loan in await arrears("overdue_amount_minor >= 20000")] == [late]
    assert await arrears("days_past_due > 40") == []
    bad = lpb.ListLoansInArrearsRequest(filter="days_past_due > 30 OR currency = EUR")
    assert set(await field_violations(c.admin.ListLoansInArrears(bad))) == {"filter"}
