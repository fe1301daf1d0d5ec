"""Background work completes or undoes what a request started, with the authority recorded then,
and never starts anything new: a payment whose PlaceHold answer was lost is finished only if the
hold exists (and its request id is closed if it does not); a saga resumed without its admin looks
its hold up instead of placing one; a saga refused at its first step has nothing to undo."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import grpc
from grpc import aio

from common.clock import Clock
from common.grpc.client import bearer_channel
from common.grpc.identity import SUBJECT_HEADER
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.saga import log as sagalog
from common.saga.runner import SagaRunner
from common.security.context import caller_var
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.lending.domain import LoanStatus
from services.lending.repository import LendingUnits
from services.lending.service import SAGA
from services.payment.domain import Beneficiary, Payment, PaymentStatus
from services.payment.repository import PaymentUnit, PaymentUnits
from tests.adversarial.world import World
from tests.bank_helpers import eur, eventually
from tests.grpc_assert import error_reason


def _as(world: World, context: str) -> tuple[tuple[str, str], ...]:
    """The headers of `context` acting for the admin (as it does on an admin's request path)."""
    return (("authorization", f"Bearer {world.service_token(context)}"), (SUBJECT_HEADER, world.admin_token))


async def _pending_payment(world: World, payment_id: str, age: timedelta = timedelta(minutes=1)) -> Payment:
    """A payment as its request stored it (authorized, screened) `age` ago, before PlaceHold's
    answer was lost (a negative age: one the worker does not see yet)."""
    at = world.bank.contexts["payment"].resolve(Clock).now() - age
    payment = Payment(
        payment_id,
        world.victim.account,
        Beneficiary(account_id=world.bob_account),
        Money.parse("EUR", "7.00"),
        "lost answer",
        PaymentStatus.PENDING,
        at,
        at,
        authorized_by=world.users["alice"],
    )
    key = IdempotencyKey(f"lost-{payment_id}", "CreatePayment", "fingerprint", f"usr:{world.users['alice']}")

    async def store(uow: PaymentUnit) -> None:  # as CreatePayment stores it, before its first step
        await uow.claim(key, payment.payment_id)
        await uow.payments.add(payment)

    await world.bank.contexts["payment"].resolve(PaymentUnits).write(store)
    return payment


async def _payment(world: World, payment_id: str) -> ppb.Payment:
    async with bearer_channel(world.bank.target, world.admin_token) as channel:
        return (await pgrpc.PaymentServiceStub(channel).GetPayment(ppb.GetPaymentRequest(payment_id=payment_id))).payment


async def _account(world: World, account_id: str) -> apb.Account:
    async with bearer_channel(world.bank.target, world.admin_token) as channel:
        return (await agrpc.AccountServiceStub(channel).GetAccount(apb.GetAccountRequest(account_id=account_id))).account


async def test_a_lost_hold_answer_is_never_turned_into_a_new_hold(world: World) -> None:
    before = await _account(world, world.victim.account)
    payment = await _pending_payment(world, new_id("pay"))

    async def settled() -> bool:
        return (await _payment(world, payment.payment_id)).status != ppb.PAYMENT_STATUS_PENDING

    await eventually(settled, 10, "the worker took the pending payment over")
    got = await _payment(world, payment.payment_id)
    assert (got.status, got.failure_reason) == (ppb.PAYMENT_STATUS_FAILED, "HOLD_NOT_PLACED"), "no hold was placed: none is"
    async with aio.insecure_channel(world.bank.target) as channel:  # the request's PlaceHold, arriving late
        late = agrpc.AccountServiceStub(channel).PlaceHold(
            apb.PlaceHoldRequest(
                request_id=f"{payment.payment_id}-hold",
                debit_account_id=world.victim.account,
                credit_account_id=world.bob_account,
                amount=eur("7.00"),
            ),
            metadata=_as(world, "payment"),
        )
        assert (await error_reason(late, grpc.StatusCode.FAILED_PRECONDITION)).reason == "REQUEST_VOIDED"
    after = await _account(world, world.victim.account)
    assert (after.balance, after.available_balance) == (before.balance, before.available_balance)


async def test_a_hold_placed_before_the_answer_was_lost_is_completed(world: World) -> None:
    before = await _account(world, world.victim.account)
    payment_id = new_id("pay")
    async with aio.insecure_channel(world.bank.target) as channel:  # the request placed the hold, then lost the answer
        await agrpc.AccountServiceStub(channel).PlaceHold(
            apb.PlaceHoldRequest(
                request_id=f"{payment_id}-hold",
                debit_account_id=world.victim.account,
                credit_account_id=world.bob_account,
                amount=eur("7.00"),
            ),
            metadata=_as(world, "payment"),
        )
    await _pending_payment(world, payment_id)

    async def completed() -> bool:
        return (await _payment(world, payment_id)).status == ppb.PAYMENT_STATUS_COMPLETED

    await eventually(completed, 10, "the worker completed the payment")
    after = await _account(world, world.victim.account)
    assert float(after.balance.amount) == float(before.balance.amount) - 7, "paid once"


async def _disbursing_saga(world: World, loan_id: str) -> tuple[str, dict[str, str]]:
    """Moves the approved loan to DISBURSING and records its saga, as DisburseLoan does before its
    first step: the process then dies, and the saga is left to the background."""
    units = world.bank.contexts["lending"].resolve(LendingUnits)
    loan = await units.read(lambda uow: uow.loans.get(loan_id))
    assert loan is not None and loan.status is LoanStatus.APPROVED
    at = loan.updated_at
    await units.write(lambda uow: uow.loans.move(loan_id, LoanStatus.APPROVED, LoanStatus.DISBURSING, at, None))
    payload = {
        "loan_id": loan_id,
        "account_id": loan.account_id,
        "currency": "EUR",
        "amount": loan.principal.amount,
        "customer_id": loan.customer_id,
        "authorized_by": "usr_admin",
    }
    runner = world.bank.contexts["lending"].resolve(SagaRunner)
    await runner._db.write(sagalog.create_run, loan.saga_id, SAGA, payload)
    return loan.saga_id, payload


async def _resume_in_background(world: World, saga_id: str) -> sagalog.SagaRecord:
    """What the saga resumer does: drive the saga with nobody's authority but the lending context's."""
    runner = world.bank.contexts["lending"].resolve(SagaRunner)

    async def alone() -> sagalog.SagaRecord:
        caller_var.set(None)
        return await runner.run(saga_id)

    return await asyncio.create_task(alone())


async def test_a_resumed_saga_that_never_reserved_compensates_without_placing_a_hold(world: World) -> None:
    book = await _account(world, "acc_LOAN_PRINCIPAL_EUR")
    saga_id, _ = await _disbursing_saga(world, world.victim.loan)
    record = await _resume_in_background(world, saga_id)
    assert record.status == sagalog.COMPENSATED, record
    assert record.steps[0].state == sagalog.REFUSED and record.steps[0].last_error == "HOLD_NOT_PLACED"
    assert (await _account(world, "acc_LOAN_PRINCIPAL_EUR")) == book, "no hold on the loan book, no money moved"


async def test_a_resumed_saga_finishes_with_the_hold_its_admin_placed(world: World) -> None:
    saga_id, payload = await _disbursing_saga(world, world.victim.loan)
    async with aio.insecure_channel(world.bank.target) as channel:  # step one ran on the admin's request, then the process died
        await agrpc.AccountServiceStub(channel).PlaceHold(
            apb.PlaceHoldRequest(
                request_id=f"{saga_id}-reserve_funds-do",
                debit_account_id="acc_LOAN_PRINCIPAL_EUR",
                credit_account_id=payload["account_id"],
                amount=eur(payload["amount"]),
                description=f"loan {payload['loan_id']}",
            ),
            metadata=_as(world, "lending"),
        )
    before = await _account(world, world.victim.account)
    record = await _resume_in_background(world, saga_id)
    assert record.status == sagalog.COMPLETED, record
    after = await _account(world, world.victim.account)
    assert float(after.balance.amount) == float(before.balance.amount) + float(payload["amount"])


async def test_a_saga_refused_at_its_first_step_ends_compensated(world: World) -> None:
    """Disbursing into an account closed after the application: nothing was done, nothing to undo."""
    async with bearer_channel(world.bank.target, world.alice_token) as alice:
        loan = (
            await lgrpc.LendingServiceStub(alice).ApplyForLoan(
                lpb.ApplyForLoanRequest(
                    request_id="into-savings",
                    customer_id=world.victim.customer,
                    account_id=world.victim.savings,
                    principal=eur("300.00"),
                    term_months=6,
                )
            )
        ).loan
        accounts = agrpc.AccountServiceStub(alice)
        await accounts.Transfer(
            apb.TransferRequest(
                request_id="empty-savings",
                debit_account_id=world.victim.savings,
                credit_account_id=world.victim.account,
                amount=eur("10.00"),
            )
        )
        await accounts.CloseAccount(apb.CloseAccountRequest(request_id="close-savings", account_id=world.victim.savings))
    async with bearer_channel(world.bank.target, world.admin_token) as admin:
        lending = lgrpc.LendingServiceStub(admin)
        await lending.ApproveLoan(
            lpb.ApproveLoanRequest(request_id="approve-savings", loan_id=loan.loan_id, annual_interest_rate="0.04")
        )
        done = (await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="disburse-savings", loan_id=loan.loan_id))).loan
    assert (done.status, done.saga_status) == (lpb.LOAN_STATUS_DISBURSEMENT_FAILED, lpb.SAGA_STATUS_COMPENSATED)
    assert [(s.name, s.state) for s in done.saga_steps] == [("reserve_funds", "REFUSED")]


async def test_a_payment_that_keeps_failing_waits_and_holds_up_nobody(world: World) -> None:
    """A passing failure pushes that payment's next attempt back, longer each time (capped at a
    minute); the ones behind it stay due. (Stored in the future, so the live worker leaves them.)"""
    units = world.bank.contexts["payment"].resolve(PaymentUnits)
    stuck, behind = [await _pending_payment(world, new_id("pay"), -timedelta(hours=1)) for _ in range(2)]
    now = world.bank.contexts["payment"].resolve(Clock).now()
    waiting = stuck.retried_later(now).retried_later(now).retried_later(now)
    assert waiting.attempts == 3 and waiting.next_attempt_at == now + timedelta(seconds=0.8)
    assert replace(stuck, attempts=40).retried_later(now).next_attempt_at == now + timedelta(seconds=60)
    await units.write(lambda uow: uow.payments.move(waiting, PaymentStatus.PENDING))
    due = {p.payment_id for p in await units.read(lambda uow: uow.payments.due(now + timedelta(hours=2), now, True, 50))}
    assert behind.payment_id in due and stuck.payment_id not in due
