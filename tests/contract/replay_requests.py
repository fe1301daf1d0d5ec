"""A valid request for every state-changing RPC, as the principal who may send it, and the
refusals decided on state that each one can meet (with, where there is one, the change of state
after which an identical new request would succeed). tests/contract/test_replays.py sends each
one, then the same request again, and compares the answers.

A builder takes the world and a tag (unique per scenario, part of every request_id it makes) and
prepares what its request needs (a fresh account, a hold, a loan at some stage) before it
returns the request."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2 as inpb
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.notification.v1 import notification_service_pb2 as npb
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import eur, fresh_document
from tests.conftest import document, onboarding
from tests.contract.replay_world import PASSWORD, ReplayWorld, Who

SAVINGS = apb.ACCOUNT_TYPE_PERSONAL_SAVINGS
TODAY = date_pb2.Date(year=2026, month=6, day=15)  # tests.conftest.TODAY
DONE = date_pb2.Date(year=2026, month=5, day=1)  # a run completed before the request
_days = itertools.count(15, -1)  # each run of the success and timeout scenarios on a day of its own


def _run_day() -> date_pb2.Date:
    return date_pb2.Date(year=2026, month=6, day=next(_days))


@dataclass(frozen=True)
class Sent:
    who: Who
    request: Message


@dataclass(frozen=True)
class Refused:
    """A request refused for the state it meets: `reason` is in its answer (an ErrorInfo reason,
    a field of a BadRequest, or a refusal the answer carries, as a payment's failure_reason).
    `allow` changes the state so that an identical new request succeeds; None where no state
    can (`final` says why)."""

    sent: Sent
    reason: str
    allow: Callable[[], Awaitable[None]] | None = None
    final: str = ""


Build = Callable[[ReplayWorld, str], Awaitable[Sent]]
Refuse = Callable[[ReplayWorld, str], Awaitable[Refused]]


@dataclass(frozen=True)
class Case:
    resource: Callable[[Any], str]  # the primary id of an OK answer (of a stream: of its messages)
    success: Build
    refusals: tuple[Refuse, ...] = ()
    no_refusal: str = ""  # why no refusal decided on state can be arranged
    outcome: Callable[[Any], str] | None = None  # what an OK answer says was done (a status): no deadline changes it


def rid(tag: str) -> str:
    return f"rp-{tag}"


def _hold_id(r: Any) -> str:
    return str(r.hold.hold_id)


def _transfer_id(r: Any) -> str:
    return str(r.transfer.transfer_id)


def _account_id(r: Any) -> str:
    return str(r.account.account_id)


def _customer_id(r: Any) -> str:
    return str(r.customer.customer_id)


def _user_id(r: Any) -> str:
    return str(r.user.user_id)


def _loan_id(r: Any) -> str:
    return str(r.loan.loan_id)


def _repayment_id(r: Any) -> str:
    return str(r.repayment.repayment_id)


def _loan_status(r: Any) -> str:
    return lpb.LoanStatus.Name(r.loan.status)


def _repayment_status(r: Any) -> str:
    return lpb.RepaymentStatus.Name(r.repayment.status)


def _run_status(runs: Any) -> str:
    return str(runs[-1].run.status)


def _run_date(runs: Any) -> str:
    day = runs[-1].run.business_date
    return f"{day.year}-{day.month:02}-{day.day:02}"


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


# --- customer -----------------------------------------------------------------------------------


async def _onboard(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, onboarding(rid(tag), document=document(fresh_document())))


async def _onboard_twice(w: ReplayWorld, tag: str) -> Refused:
    taken = document(fresh_document())
    await w.customers.OnboardCustomer(onboarding(f"{rid(tag)}-first", document=taken), metadata=await w.metadata(w.admin))
    return Refused(
        Sent(w.admin, onboarding(rid(tag), document=taken)), "CUSTOMER_ALREADY_EXISTS", final="customers are never removed"
    )


def _contact(tag: str, customer_id: str, version: int = 0) -> cpb.UpdateCustomerRequest:
    return cpb.UpdateCustomerRequest(
        request_id=rid(tag),
        customer_id=customer_id,
        customer=cpb.Customer(email=f"{tag}@example.com"),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        expected_version=version,
    )


async def _update(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, _contact(tag, w.alice_customer))


async def _update_stale(w: ReplayWorld, tag: str) -> Refused:
    """Pinned to the version after the next change: refused until that change is made."""
    sent = Sent(w.alice, _contact(tag, w.alice_customer, await w.alice_version() + 1))

    async def changed() -> None:
        await w.customers.UpdateCustomer(_contact(f"{tag}-between", w.alice_customer), metadata=await w.metadata(w.admin))

    return Refused(sent, "VERSION_MISMATCH", changed)


async def _assign(w: ReplayWorld, tag: str) -> Sent:
    manager, _ = await w.user()
    request = cpb.AssignRelationshipManagerRequest(
        request_id=rid(tag), customer_id=w.bob_customer, relationship_manager_id=manager
    )
    return Sent(w.admin, request)


async def _assign_not_a_manager(w: ReplayWorld, tag: str) -> Refused:
    staff, _ = await w.user(ipb.ROLE_ADMIN)
    request = cpb.AssignRelationshipManagerRequest(request_id=rid(tag), customer_id=w.bob_customer, relationship_manager_id=staff)
    return Refused(
        Sent(w.admin, request), "NOT_A_RELATIONSHIP_MANAGER", lambda: w.set_roles(staff, ipb.ROLE_RELATIONSHIP_MANAGER)
    )


async def _review(w: ReplayWorld, tag: str) -> Sent:
    customer = await w.customer_in_review()
    return Sent(w.admin, cpb.ReviewKycRequest(request_id=rid(tag), customer_id=customer, decision=cpb.KYC_DECISION_CLEAR))


async def _review_decided(w: ReplayWorld, tag: str) -> Refused:
    request = cpb.ReviewKycRequest(request_id=rid(tag), customer_id=w.bob_customer, decision=cpb.KYC_DECISION_CLEAR)
    return Refused(Sent(w.admin, request), "KYC_NOT_IN_REVIEW", final="a decided KYC is never in review again")


# --- identity -----------------------------------------------------------------------------------


def _new_user(tag: str, username: str) -> ipb.CreateUserRequest:
    return ipb.CreateUserRequest(request_id=rid(tag), username=username, password=PASSWORD, roles=[ipb.ROLE_RELATIONSHIP_MANAGER])


async def _create_user(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, _new_user(tag, rid(tag).lower()))


async def _create_taken(w: ReplayWorld, tag: str) -> Refused:
    return Refused(Sent(w.admin, _new_user(tag, "alice")), "USERNAME_TAKEN", final="users are never removed")


async def _update_user(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.UpdateUserRequest(request_id=rid(tag), user_id=user_id, roles=[ipb.ROLE_ADMIN]))


async def _demote_self(w: ReplayWorld, tag: str) -> Refused:
    request = ipb.UpdateUserRequest(request_id=rid(tag), user_id=w.admin_id, roles=[ipb.ROLE_RELATIONSHIP_MANAGER])
    return Refused(Sent(w.admin, request), "SELF_LOCKOUT", final="an admin demoting themself is refused whatever the state")


async def _disable(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.DisableUserRequest(request_id=rid(tag), user_id=user_id))


async def _disable_self(w: ReplayWorld, tag: str) -> Refused:
    request = ipb.DisableUserRequest(request_id=rid(tag), user_id=w.admin_id)
    return Refused(Sent(w.admin, request), "SELF_LOCKOUT", final="an admin disabling themself is refused whatever the state")


async def _enable(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, ipb.EnableUserRequest(request_id=rid(tag), user_id=await w.disabled_user()))


async def _change_password(w: ReplayWorld, tag: str) -> Sent:
    """The user's own change: their next login (the replay's) is with the new password, or with
    the old one where the change was never made."""
    user_id, who = await w.user()
    new = f"new-password-{tag}"
    who.passwords.append(new)
    return Sent(who, ipb.ChangePasswordRequest(request_id=rid(tag), user_id=user_id, current_password=PASSWORD, new_password=new))


async def _change_password_wrong(w: ReplayWorld, tag: str) -> Refused:
    """A wrong current password; then an admin sets the user's password to the one it named."""
    user_id, who = await w.user()
    named = f"named-password-{tag}"
    request = ipb.ChangePasswordRequest(
        request_id=rid(tag), user_id=user_id, current_password=named, new_password=f"next-password-{tag}"
    )
    return Refused(Sent(who, request), "current_password", lambda: w.reset_password(user_id, who, named))


async def _revoke(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.RevokeTokensRequest(request_id=rid(tag), user_id=user_id))


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
    return Sent(w.admin, lpb.RunCollectionRequest(request_id=rid(tag), business_date=_run_day(), currency_code="EUR"))


async def _collect_again(w: ReplayWorld, tag: str) -> Refused:
    first = lpb.RunCollectionRequest(request_id=f"{rid(tag)}-first", business_date=DONE, currency_code="EUR")
    _ = [r async for r in w.lending.RunCollection(first, metadata=await w.metadata(w.admin))]
    request = lpb.RunCollectionRequest(request_id=rid(tag), business_date=DONE, currency_code="EUR")
    return Refused(Sent(w.admin, request), "COLLECTION_RUN_ALREADY_COMPLETED", final="a completed run is never run again")


# --- interest, notification, payment --------------------------------------------------------------


async def _run_interest(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, inpb.RunDailyInterestRequest(request_id=rid(tag), business_date=_run_day()))


async def _run_interest_again(w: ReplayWorld, tag: str) -> Refused:
    first = inpb.RunDailyInterestRequest(request_id=f"{rid(tag)}-first", business_date=DONE)
    _ = [r async for r in w.interest.RunDailyInterest(first, metadata=await w.metadata(w.admin))]
    request = inpb.RunDailyInterestRequest(request_id=rid(tag), business_date=DONE)
    return Refused(Sent(w.admin, request), "INTEREST_RUN_ALREADY_COMPLETED", final="a completed run is never run again")


async def _preferences(w: ReplayWorld, tag: str) -> Sent:
    request = npb.UpdateNotificationPreferencesRequest(request_id=rid(tag), opted_out_kinds=["PAYMENT_COMPLETED"])
    return Sent(w.alice, request)


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


NO_STATE = "refused only for the caller's authority or the request's form, never for the state it meets"
CASES: dict[str, Case] = {
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
    "OnboardCustomer": Case(_customer_id, _onboard, (_onboard_twice,)),
    "UpdateCustomer": Case(_customer_id, _update, (_update_stale,)),
    "AssignRelationshipManager": Case(_customer_id, _assign, (_assign_not_a_manager,)),
    "ReviewKyc": Case(_customer_id, _review, (_review_decided,)),
    "CreateUser": Case(_user_id, _create_user, (_create_taken,)),
    "UpdateUser": Case(_user_id, _update_user, (_demote_self,)),
    "DisableUser": Case(_user_id, _disable, (_disable_self,)),
    "EnableUser": Case(_user_id, _enable, no_refusal=NO_STATE),
    "ChangePassword": Case(_user_id, _change_password, (_change_password_wrong,)),
    "RevokeTokens": Case(_user_id, _revoke, no_refusal=NO_STATE),
    "ApplyForLoan": Case(_loan_id, _apply, (_apply_foreign_account,)),
    "ApproveLoan": Case(_loan_id, _approve, (_approve_approved,)),
    "DisburseLoan": Case(_loan_id, _disburse, (_disburse_unapproved,), outcome=_loan_status),
    "RepayLoan": Case(_repayment_id, _repay, (_repay_short, _repay_undisbursed), outcome=_repayment_status),
    "PayOffLoan": Case(_repayment_id, _pay_off, (_pay_off_undisbursed,), outcome=_repayment_status),
    "RunCollection": Case(_run_date, _collect, (_collect_again,), outcome=_run_status),
    "RunDailyInterest": Case(_run_date, _run_interest, (_run_interest_again,), outcome=_run_status),
    "UpdateNotificationPreferences": Case(lambda r: str(r.preferences.customer_id), _preferences, no_refusal=NO_STATE),
    "CreatePayment": Case(_payment, _pay, (_pay_short,)),
}
