"""The requests that move money (accounts, holds, charges, payments, loans), for
tests/contract/test_replays.py: each as the principal who may send it, with the refusals decided on
state it can meet and, where there is one, the change of state after which an identical new
request would succeed. A builder takes the world and a tag (unique per scenario, part of every
request_id it makes) and prepares what its request needs (a fresh account, a hold, a loan at some
stage) before it returns the request."""

from __future__ import annotations

import itertools
from typing import Any

from common import faults
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import eur
from tests.contract.replay_world import Case, Refused, ReplayWorld, Sent, Who, rid

SAVINGS = apb.ACCOUNT_TYPE_PERSONAL_SAVINGS
TODAY = date_pb2.Date(year=2026, month=6, day=15)  # tests.conftest.TODAY
DONE = date_pb2.Date(year=2026, month=5, day=1)  # a run completed before the request
NO_STATE = "refused only for the caller's authority or the request's form, never for the state it meets"
_days = itertools.count(15, -1)  # each run of the success and timeout scenarios on a day of its own


def run_day() -> date_pb2.Date:
    return date_pb2.Date(year=2026, month=6, day=next(_days))


def run_status(runs: Any) -> str:
    return str(runs[-1].run.status)


def run_date(runs: Any) -> str:
    day = runs[-1].run.business_date
    return f"{day.year}-{day.month:02}-{day.day:02}"


def _hold_id(r: Any) -> str:
    return str(r.hold.hold_id)


def _transfer_id(r: Any) -> str:
    return str(r.transfer.transfer_id)


def _account_id(r: Any) -> str:
    return str(r.account.account_id)


def _loan_id(r: Any) -> str:
    return str(r.loan.loan_id)


def _repayment_id(r: Any) -> str:
    return str(r.repayment.repayment_id)


def _loan_status(r: Any) -> str:
    return lpb.LoanStatus.Name(r.loan.status)


def _repayment_status(r: Any) -> str:
    return lpb.RepaymentStatus.Name(r.repayment.status)


# --- account ------------------------------------------------------------------------------------


async def _open(w: ReplayWorld, tag: str) -> Sent:
    return Sent(
        w.alice, apb.OpenAccountRequest(request_id=rid(tag), customer_id=w.alice_customer, type=SAVINGS, currency_code="EUR")
    )


async def _open_unverified(w: ReplayWorld, tag: str) -> Refused:
    customer = await w.customer_in_review()
    request = apb.OpenAccountRequest(request_id=rid(tag), customer_id=customer, type=SAVINGS, currency_code="EUR")
    return Refused(Sent(w.admin, request), "CUSTOMER_NOT_VERIFIED", lambda: w.clear_kyc(customer))


async def _close(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, apb.CloseAccountRequest(request_id=rid(tag), account_id=await w.savings()))


async def _close_not_empty(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings("1.00")
    request = apb.CloseAccountRequest(request_id=rid(tag), account_id=account)
    return Refused(Sent(w.alice, request), "ACCOUNT_BALANCE_NOT_ZERO", lambda: w.withdraw(account, "1.00"))


async def _deposit(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, apb.DepositRequest(request_id=rid(tag), account_id=w.alice_account, amount=eur("1.00")))


async def _deposit_closed(w: ReplayWorld, tag: str) -> Refused:
    request = apb.DepositRequest(request_id=rid(tag), account_id=await w.closed_account(), amount=eur("1.00"))
    return Refused(Sent(w.admin, request), "ACCOUNT_CLOSED", final="a closed account never opens again")


async def _withdraw(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, apb.WithdrawRequest(request_id=rid(tag), account_id=w.alice_account, amount=eur("1.00")))


async def _withdraw_short(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings()
    request = apb.WithdrawRequest(request_id=rid(tag), account_id=account, amount=eur("5.00"))
    return Refused(Sent(w.alice, request), "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "5.00"))


def _transfer_request(tag: str, debit: str, credit: str, amount: str) -> apb.TransferRequest:
    return apb.TransferRequest(request_id=rid(tag), debit_account_id=debit, credit_account_id=credit, amount=eur(amount))


async def _transfer(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, _transfer_request(tag, w.alice_account, w.bob_account, "1.00"))


async def _transfer_short(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings()
    sent = Sent(w.alice, _transfer_request(tag, account, w.bob_account, "5.00"))
    return Refused(sent, "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "5.00"))


async def _reverse(w: ReplayWorld, tag: str) -> Sent:
    transfer = await w.transfer(w.alice_account, w.bob_account)
    return Sent(w.admin, apb.ReverseTransferRequest(request_id=rid(tag), transfer_id=transfer, reason="replayed"))


async def _reverse_short(w: ReplayWorld, tag: str) -> Refused:
    """The credited account has spent what it was paid: the reversal cannot take it back."""
    account = await w.savings()
    transfer = await w.transfer(w.alice_account, account)
    await w.transfer(account, w.bob_account)
    request = apb.ReverseTransferRequest(request_id=rid(tag), transfer_id=transfer, reason="replayed")
    return Refused(Sent(w.admin, request), "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "1.00"))


def _hold_request(tag: str, debit: str, credit: str, amount: str) -> apb.PlaceHoldRequest:
    return apb.PlaceHoldRequest(request_id=rid(tag), debit_account_id=debit, credit_account_id=credit, amount=eur(amount))


async def _place(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, _hold_request(tag, w.alice_account, w.bob_account, "1.00"))


async def _place_short(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings()
    sent = Sent(w.alice, _hold_request(tag, account, w.bob_account, "5.00"))
    return Refused(sent, "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "5.00"))


async def _capture(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, apb.CaptureHoldRequest(request_id=rid(tag), hold_id=await w.hold()))


async def _capture_released(w: ReplayWorld, tag: str) -> Refused:
    request = apb.CaptureHoldRequest(request_id=rid(tag), hold_id=await w.released_hold())
    return Refused(Sent(w.alice, request), "HOLD_ALREADY_RESOLVED", final="a resolved hold never opens again")


async def _release(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, apb.ReleaseHoldRequest(request_id=rid(tag), hold_id=await w.hold()))


async def _release_released(w: ReplayWorld, tag: str) -> Refused:
    request = apb.ReleaseHoldRequest(request_id=rid(tag), hold_id=await w.released_hold())
    return Refused(Sent(w.alice, request), "HOLD_ALREADY_RESOLVED", final="a resolved hold never opens again")


async def _lookup_hold(w: ReplayWorld, tag: str) -> Sent:
    """The payment context lost the answer of a PlaceHold it made for Alice."""
    placed = _hold_request(f"{tag}-placed", w.alice_account, w.bob_account, "1.00")
    await w.accounts.PlaceHold(placed, metadata=await w.metadata(w.payment_for_alice()))
    return Sent(Who(context="payment"), apb.LookupHoldRequest(request_id=placed.request_id))


async def _lookup_no_hold(w: ReplayWorld, tag: str) -> Refused:
    request = apb.LookupHoldRequest(request_id=rid(tag))
    return Refused(Sent(Who(context="payment"), request), "NOT_FOUND", final="the lookup closed the request_id for good")


def _charge(tag: str, account_id: str, amount: str) -> apb.ChargeOrder:
    """A charge for interest owed to the bank: only lending credits that account (for a user it relays)."""
    line = apb.ChargeLine(internal_account=apb.INTERNAL_ACCOUNT_INTEREST_INCOME, amount=eur(amount))
    return apb.ChargeOrder(request_id=rid(tag), account_id=account_id, lines=[line], description="replayed")


def _charges(r: Any) -> str:
    return ",".join(f"{apb.ChargeStatus.Name(c.status)}:{c.charge_id}:{c.rejection_reason}" for c in r.charges)


async def _post_charges(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.lending_for_alice(), apb.PostChargesRequest(charges=[_charge(tag, w.alice_account, "0.01")]))


async def _post_charges_short(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings()
    sent = Sent(w.lending_for_alice(), apb.PostChargesRequest(charges=[_charge(tag, account, "1.00")]))
    return Refused(sent, "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "1.00"))


async def _lookup_charge(w: ReplayWorld, tag: str) -> Sent:
    """The lending context lost the answer of a charge it posted for Alice."""
    order = _charge(f"{tag}-posted", w.alice_account, "0.01")
    await w.accounts.PostCharges(apb.PostChargesRequest(charges=[order]), metadata=await w.metadata(w.lending_for_alice()))
    return Sent(Who(context="lending"), apb.LookupChargeRequest(request_id=order.request_id))


async def _lookup_no_charge(w: ReplayWorld, tag: str) -> Refused:
    request = apb.LookupChargeRequest(request_id=rid(tag))
    return Refused(Sent(Who(context="lending"), request), "NOT_FOUND", final="the lookup closed the request_id for good")


def _accrued(r: Any) -> str:
    return f"{r.processed}:{r.interest_posted.amount}:{r.last_account_id}:{r.done}"


async def _accrue(w: ReplayWorld, tag: str) -> Sent:
    await w.savings("100000.00")  # an interest-bearing account that earns a cent or more a day
    tier = apb.InterestTier(annual_rate="0.01")
    request = apb.AccrueInterestRequest(request_id=rid(tag), business_date=TODAY, currency_code="EUR", tiers=[tier], limit=1000)
    return Sent(w.admin, request)


def _fees(r: Any) -> str:
    return f"{r.processed}:{r.charged}:{r.fees_charged.amount}:{r.unpaid}:{r.last_account_id}:{r.done}"


async def _charge_fees(w: ReplayWorld, tag: str) -> Sent:
    month = date_pb2.Date(year=2026, month=5, day=1)
    return Sent(w.admin, apb.ChargeMonthlyFeesRequest(request_id=rid(tag), month=month, currency_code="EUR", limit=1000))


# --- lending ------------------------------------------------------------------------------------


async def _apply(w: ReplayWorld, tag: str) -> Sent:
    request = lpb.ApplyForLoanRequest(
        request_id=rid(tag), customer_id=w.alice_customer, account_id=await w.savings(), principal=eur("100.00"), term_months=12
    )
    return Sent(w.alice, request)


async def _apply_foreign_account(w: ReplayWorld, tag: str) -> Refused:
    request = lpb.ApplyForLoanRequest(
        request_id=rid(tag), customer_id=w.alice_customer, account_id=w.bob_account, principal=eur("100.00"), term_months=12
    )
    return Refused(Sent(w.admin, request), "ACCOUNT_NOT_ELIGIBLE", final="an account's owner never changes")


async def _approve(w: ReplayWorld, tag: str) -> Sent:
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPLIED)
    return Sent(w.admin, lpb.ApproveLoanRequest(request_id=rid(tag), loan_id=loan, annual_interest_rate="0.06"))


async def _approve_approved(w: ReplayWorld, tag: str) -> Refused:
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    request = lpb.ApproveLoanRequest(request_id=rid(tag), loan_id=loan, annual_interest_rate="0.07")
    return Refused(Sent(w.admin, request), "LOAN_NOT_APPLIED", final="an approved loan is never an application again")


async def _disburse(w: ReplayWorld, tag: str) -> Sent:
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    return Sent(w.admin, lpb.DisburseLoanRequest(request_id=rid(tag), loan_id=loan))


async def _disburse_unapproved(w: ReplayWorld, tag: str) -> Refused:
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPLIED)
    request = lpb.DisburseLoanRequest(request_id=rid(tag), loan_id=loan)
    return Refused(Sent(w.admin, request), "LOAN_NOT_APPROVED", lambda: w.approve(loan))


async def _repay(w: ReplayWorld, tag: str) -> Sent:
    loan, _ = await w.loan(lpb.LOAN_STATUS_DISBURSED)
    return Sent(w.alice, lpb.RepayLoanRequest(request_id=rid(tag), loan_id=loan, amount=eur("10.00")))


async def _repay_short(w: ReplayWorld, tag: str) -> Refused:
    loan, account = await w.loan(lpb.LOAN_STATUS_DISBURSED)
    await w.withdraw(account, "100.00")
    request = lpb.RepayLoanRequest(request_id=rid(tag), loan_id=loan, amount=eur("10.00"))
    return Refused(Sent(w.alice, request), "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "10.00"))


async def _repay_undisbursed(w: ReplayWorld, tag: str) -> Refused:
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    request = lpb.RepayLoanRequest(request_id=rid(tag), loan_id=loan, amount=eur("10.00"))
    return Refused(Sent(w.alice, request), "LOAN_NOT_ACTIVE", lambda: w.disburse(loan))


async def _pay_off(w: ReplayWorld, tag: str) -> Sent:
    loan, _ = await w.loan(lpb.LOAN_STATUS_DISBURSED)
    quote = await w.lending.GetPayoffQuote(lpb.GetPayoffQuoteRequest(loan_id=loan), metadata=await w.metadata(w.alice))
    return Sent(w.alice, lpb.PayOffLoanRequest(request_id=rid(tag), loan_id=loan, amount=quote.quote.amount))


async def _pay_off_undisbursed(w: ReplayWorld, tag: str) -> Refused:
    """Today's payoff of a loan disbursed today is its principal."""
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    request = lpb.PayOffLoanRequest(request_id=rid(tag), loan_id=loan, amount=eur("100.00"))
    return Refused(Sent(w.alice, request), "LOAN_NOT_ACTIVE", lambda: w.disburse(loan))


async def _collect(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, lpb.RunCollectionRequest(request_id=rid(tag), business_date=run_day(), currency_code="EUR"))


async def _collect_again(w: ReplayWorld, tag: str) -> Refused:
    first = lpb.RunCollectionRequest(request_id=f"{rid(tag)}-first", business_date=DONE, currency_code="EUR")
    _ = [r async for r in w.lending.RunCollection(first, metadata=await w.metadata(w.admin))]
    request = lpb.RunCollectionRequest(request_id=rid(tag), business_date=DONE, currency_code="EUR")
    return Refused(Sent(w.admin, request), "COLLECTION_RUN_ALREADY_COMPLETED", final="a completed run is never run again")


# --- payment ------------------------------------------------------------------------------------


def _payment(r: Any) -> str:
    """The payment made; a refusal it met is part of it (it answers OK, FAILED with the reason)."""
    return f"{r.payment.payment_id}:{r.payment.failure_reason}"


def _payment_request(tag: str, debtor: str, creditor: str, amount: str) -> ppb.CreatePaymentRequest:
    return ppb.CreatePaymentRequest(
        request_id=rid(tag), debtor_account_id=debtor, internal=ppb.InternalBeneficiary(account_id=creditor), amount=eur(amount)
    )


async def _pay(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, _payment_request(tag, w.alice_account, w.bob_account, "1.00"))


async def _pay_short(w: ReplayWorld, tag: str) -> Refused:
    account = await w.savings()
    sent = Sent(w.alice, _payment_request(tag, account, w.bob_account, "5.00"))
    return Refused(sent, "INSUFFICIENT_FUNDS", lambda: w.deposit(account, "5.00"))


async def _stopped_saga(w: ReplayWorld, tag: str) -> str:
    """The saga of an approved loan stopped FAILED_NEEDS_OPERATOR: its last step failed, then the
    reversal of its transfer kept failing (the faults disarmed again at once)."""
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    points = ("lending.mark_disbursed", "lending.reverse")
    faults.arm(*points)
    try:
        request = lpb.DisburseLoanRequest(request_id=rid(f"{tag}-stop"), loan_id=loan)
        stopped = (await w.lending.DisburseLoan(request, metadata=await w.metadata(w.admin))).loan
    finally:
        faults.disarm(*points)
    assert stopped.saga_status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR, stopped
    return f"sag-{loan}"


async def _completed_saga(w: ReplayWorld) -> str:
    loan, _ = await w.loan(lpb.LOAN_STATUS_DISBURSED)
    return f"sag-{loan}"


def _saga_id(r: Any) -> str:
    return str(r.saga.saga_id)


def _saga_status(r: Any) -> str:
    return lpb.SagaStatus.Name(r.saga.status)


async def _retry_saga(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, lpb.RetrySagaRequest(request_id=rid(tag), saga_id=await _stopped_saga(w, tag), reason="replayed"))


async def _retry_completed(w: ReplayWorld, tag: str) -> Refused:
    request = lpb.RetrySagaRequest(request_id=rid(tag), saga_id=await _completed_saga(w), reason="replayed")
    return Refused(Sent(w.admin, request), "SAGA_NOT_FAILED", final="a completed saga never stops again")


async def _compensate_saga(w: ReplayWorld, tag: str) -> Sent:
    saga_id = await _stopped_saga(w, tag)  # 100.00: below the operators' four-eyes amount, one admin compensates
    return Sent(w.admin, lpb.CompensateSagaRequest(request_id=rid(tag), saga_id=saga_id, reason="replayed"))


async def _compensate_completed(w: ReplayWorld, tag: str) -> Refused:
    request = lpb.CompensateSagaRequest(request_id=rid(tag), saga_id=await _completed_saga(w), reason="replayed")
    return Refused(Sent(w.admin, request), "SAGA_NOT_FAILED", final="a completed saga never stops again")


MONEY_CASES: dict[str, Case] = {
    "OpenAccount": Case(_account_id, _open, (_open_unverified,)),
    "CloseAccount": Case(_account_id, _close, (_close_not_empty,)),
    "Deposit": Case(_transfer_id, _deposit, (_deposit_closed,)),
    "Withdraw": Case(_transfer_id, _withdraw, (_withdraw_short,)),
    "Transfer": Case(_transfer_id, _transfer, (_transfer_short,)),
    "ReverseTransfer": Case(_transfer_id, _reverse, (_reverse_short,)),
    "PlaceHold": Case(_hold_id, _place, (_place_short,)),
    "CaptureHold": Case(_transfer_id, _capture, (_capture_released,)),
    "ReleaseHold": Case(_hold_id, _release, (_release_released,)),
    "LookupHold": Case(_hold_id, _lookup_hold, (_lookup_no_hold,)),
    "PostCharges": Case(_charges, _post_charges, (_post_charges_short,)),
    "LookupCharge": Case(lambda r: str(r.charge.charge_id), _lookup_charge, (_lookup_no_charge,)),
    "AccrueInterest": Case(_accrued, _accrue, no_refusal=NO_STATE + " (the date is judged by the clock)"),
    "ChargeMonthlyFees": Case(_fees, _charge_fees, no_refusal=NO_STATE + " (an account that cannot pay is counted unpaid)"),
    "ApplyForLoan": Case(_loan_id, _apply, (_apply_foreign_account,)),
    "ApproveLoan": Case(_loan_id, _approve, (_approve_approved,)),
    "DisburseLoan": Case(_loan_id, _disburse, (_disburse_unapproved,), outcome=_loan_status),
    "RetrySaga": Case(_saga_id, _retry_saga, (_retry_completed,), outcome=_saga_status),
    "CompensateSaga": Case(_saga_id, _compensate_saga, (_compensate_completed,), outcome=_saga_status),
    "RepayLoan": Case(_repayment_id, _repay, (_repay_short, _repay_undisbursed), outcome=_repayment_status),
    "PayOffLoan": Case(_repayment_id, _pay_off, (_pay_off_undisbursed,), outcome=_repayment_status),
    "RunCollection": Case(run_date, _collect, (_collect_again,), outcome=run_status),
    "CreatePayment": Case(_payment, _pay, (_pay_short,)),
}
