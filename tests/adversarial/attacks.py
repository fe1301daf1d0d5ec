"""Every state-changing RPC of the bank, aimed at the victim's resources, and a raw way to send it
with any caller's headers, any deadline, a cancellation, or twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from grpc import aio

from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2 as ipr
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.type.v1 import date_pb2
from tests.adversarial.world import EXTERNAL_IBAN, Metadata, Victim, World
from tests.bank_helpers import eur, fresh_document
from tests.conftest import document, onboarding

ACCOUNT, CUSTOMER, IDENTITY = (
    "/ogpgy.account.v1.AccountService",
    "/ogpgy.customer.v1.CustomerService",
    "/ogpgy.identity.v1.IdentityService",
)
PAYMENT, LENDING, INTEREST = (
    "/ogpgy.payment.v1.PaymentService",
    "/ogpgy.lending.v1.LendingService",
    "/ogpgy.interest.v1.InterestService",
)
DAY = date_pb2.Date(year=2026, month=6, day=14)
Build = Callable[[Victim, World, str], Message]


@dataclass(frozen=True)
class Attack:
    name: str
    path: str
    build: Build  # (victim, world, tag) -> the request; `tag` makes its request_id unique
    exempt: tuple[str, ...] = ()  # contexts for which the call is legitimately their own (the target's owner)
    scheduled_by: str = ""  # the context whose own schedule runs it (alone; relaying for Bob it is refused)
    streaming: bool = False


def _customer_attacks() -> list[Attack]:
    return [
        Attack(
            "onboard a customer",
            f"{CUSTOMER}/OnboardCustomer",
            lambda v, w, t: onboarding(f"adv-on-{t}", document=document(fresh_document())),
        ),
        Attack(
            "change her contact data",
            f"{CUSTOMER}/UpdateCustomer",
            lambda v, w, t: cpb.UpdateCustomerRequest(
                request_id=f"adv-up-{t}",
                customer_id=v.customer,
                customer=cpb.Customer(email="mallory@example.com"),
                update_mask=field_mask_pb2.FieldMask(paths=["email"]),
            ),
        ),
        Attack(
            "assign her another manager",
            f"{CUSTOMER}/AssignRelationshipManager",
            lambda v, w, t: cpb.AssignRelationshipManagerRequest(
                request_id=f"adv-as-{t}", customer_id=v.customer, relationship_manager_id=w.users["ron"]
            ),
        ),
        Attack(
            "decide her KYC",
            f"{CUSTOMER}/ReviewKyc",
            lambda v, w, t: cpb.ReviewKycRequest(
                request_id=f"adv-kyc-{t}", customer_id=v.customer, decision=cpb.KYC_DECISION_REJECT
            ),
        ),
        Attack(
            "make a login for her",
            f"{IDENTITY}/CreateUser",
            lambda v, w, t: ipb.CreateUserRequest(
                request_id=f"adv-cu-{t}",
                username=f"mallory-{t}".lower()[:60],
                password="password-of-mallory",
                roles=[ipb.ROLE_CUSTOMER],
                customer_id=v.customer,
            ),
        ),
    ]


def _account_attacks() -> list[Attack]:
    return [
        Attack(
            "open an account in her name",
            f"{ACCOUNT}/OpenAccount",
            lambda v, w, t: apb.OpenAccountRequest(
                request_id=f"adv-op-{t}", customer_id=v.customer, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
            ),
        ),
        Attack(
            "close her savings",
            f"{ACCOUNT}/CloseAccount",
            lambda v, w, t: apb.CloseAccountRequest(request_id=f"adv-cl-{t}", account_id=v.savings),
        ),
        Attack(
            "deposit to her account",
            f"{ACCOUNT}/Deposit",
            lambda v, w, t: apb.DepositRequest(request_id=f"adv-dp-{t}", account_id=v.account, amount=eur("1.00")),
        ),
        Attack(
            "withdraw from her account",
            f"{ACCOUNT}/Withdraw",
            lambda v, w, t: apb.WithdrawRequest(request_id=f"adv-wd-{t}", account_id=v.account, amount=eur("1.00")),
        ),
        Attack(
            "transfer her money",
            f"{ACCOUNT}/Transfer",
            lambda v, w, t: apb.TransferRequest(
                request_id=f"adv-tr-{t}", debit_account_id=v.account, credit_account_id=w.bob_account, amount=eur("1.00")
            ),
        ),
        Attack(
            "charge her account",
            f"{ACCOUNT}/PostCharges",
            lambda v, w, t: apb.PostChargesRequest(
                charges=[
                    apb.ChargeOrder(
                        request_id=f"adv-pc-{t}",
                        account_id=v.account,
                        lines=[apb.ChargeLine(internal_account=apb.INTERNAL_ACCOUNT_FEE_INCOME, amount=eur("1.00"))],
                        description="a fee she never owed",
                    )
                ]
            ),
        ),
        Attack(
            "reserve her money",
            f"{ACCOUNT}/PlaceHold",
            lambda v, w, t: apb.PlaceHoldRequest(
                request_id=f"adv-ph-{t}", debit_account_id=v.account, credit_account_id=w.bob_account, amount=eur("1.00")
            ),
        ),
        Attack(
            "replay the payment's hold request",
            f"{ACCOUNT}/PlaceHold",
            lambda v, w, t: apb.PlaceHoldRequest(
                request_id=v.payment_hold_request,
                debit_account_id=v.account,
                credit_account_id="acc_CLEARING_EUR",
                amount=eur("20.00"),
            ),
        ),
        Attack(
            "capture her own hold",
            f"{ACCOUNT}/CaptureHold",
            lambda v, w, t: apb.CaptureHoldRequest(request_id=f"adv-co-{t}", hold_id=v.own_hold),
        ),
        Attack(
            "release her own hold",
            f"{ACCOUNT}/ReleaseHold",
            lambda v, w, t: apb.ReleaseHoldRequest(request_id=f"adv-ro-{t}", hold_id=v.own_hold),
        ),
        Attack(
            "capture her payment's hold",
            f"{ACCOUNT}/CaptureHold",
            lambda v, w, t: apb.CaptureHoldRequest(request_id=f"adv-cp-{t}", hold_id=v.payment_hold),
            exempt=("payment",),
        ),
        Attack(
            "release her payment's hold",
            f"{ACCOUNT}/ReleaseHold",
            lambda v, w, t: apb.ReleaseHoldRequest(request_id=f"adv-rp-{t}", hold_id=v.payment_hold),
            exempt=("payment",),
        ),
        Attack(
            "reverse her transfer",
            f"{ACCOUNT}/ReverseTransfer",
            lambda v, w, t: apb.ReverseTransferRequest(request_id=f"adv-rv-{t}", transfer_id=v.transfer, reason="mine now"),
        ),
        Attack(
            "charge fees",
            f"{ACCOUNT}/ChargeMonthlyFees",
            lambda v, w, t: apb.ChargeMonthlyFeesRequest(
                request_id=f"adv-fee-{t}", month=date_pb2.Date(year=2026, month=1, day=1), currency_code="EUR", limit=100
            ),
            scheduled_by="interest",  # the bank's day: its scheduled close posts every account's interest and fees
        ),
        Attack(
            "post interest",
            f"{ACCOUNT}/AccrueInterest",
            lambda v, w, t: apb.AccrueInterestRequest(
                request_id=f"adv-ai-{t}",
                business_date=DAY,
                currency_code="EUR",
                limit=100,
                tiers=[apb.InterestTier(annual_rate="0.5")],
            ),
            scheduled_by="interest",  # the bank's day: its scheduled close posts every account's interest and fees
        ),
        # a context looks up (and may close) request ids in its own scope only: not the victim's
        Attack(
            "close her payment's hold request",
            f"{ACCOUNT}/LookupHold",
            lambda v, w, t: apb.LookupHoldRequest(request_id=v.payment_hold_request),
            exempt=("payment", "lending"),
        ),
    ]


def _other_attacks() -> list[Attack]:
    return [
        Attack(
            "pay from her account",
            f"{PAYMENT}/CreatePayment",
            lambda v, w, t: ppb.CreatePaymentRequest(
                request_id=f"adv-pi-{t}",
                debtor_account_id=v.account,
                amount=eur("1.00"),
                internal=ppb.InternalBeneficiary(account_id=w.bob_account),
            ),
        ),
        Attack(
            "pay out from her account",
            f"{PAYMENT}/CreatePayment",
            lambda v, w, t: ppb.CreatePaymentRequest(
                request_id=f"adv-pe-{t}",
                debtor_account_id=v.account,
                amount=eur("1.00"),
                external=ppb.ExternalBeneficiary(iban=EXTERNAL_IBAN, name="Mallory"),
            ),
        ),
        Attack(
            "borrow in her name",
            f"{LENDING}/ApplyForLoan",
            lambda v, w, t: lpb.ApplyForLoanRequest(
                request_id=f"adv-la-{t}", customer_id=v.customer, account_id=v.account, principal=eur("100.00"), term_months=12
            ),
        ),
        Attack(
            "approve her loan",
            f"{LENDING}/ApproveLoan",
            lambda v, w, t: lpb.ApproveLoanRequest(request_id=f"adv-lp-{t}", loan_id=v.loan, annual_interest_rate="0.01"),
        ),
        Attack(
            "disburse her loan",
            f"{LENDING}/DisburseLoan",
            lambda v, w, t: lpb.DisburseLoanRequest(request_id=f"adv-ld-{t}", loan_id=v.loan),
        ),
        Attack(
            "run the daily interest",
            f"{INTEREST}/RunDailyInterest",
            lambda v, w, t: ipr.RunDailyInterestRequest(request_id=f"adv-ir-{t}", business_date=DAY),
            streaming=True,
        ),
    ]


ATTACKS: tuple[Attack, ...] = (*_customer_attacks(), *_account_attacks(), *_other_attacks())


def _call(channel: aio.Channel, attack: Attack, request: Message, metadata: Metadata, timeout: float | None) -> aio.Call:
    if attack.streaming:
        return channel.unary_stream(attack.path, request_serializer=type(request).SerializeToString)(
            request, metadata=metadata, timeout=timeout
        )
    return channel.unary_unary(attack.path, request_serializer=type(request).SerializeToString)(
        request, metadata=metadata, timeout=timeout
    )


async def _outcome(call: aio.Call, streaming: bool) -> grpc.StatusCode:
    try:
        if streaming:
            async for _ in call:
                pass
        else:
            await call
    except aio.AioRpcError as error:
        return error.code()
    except asyncio.CancelledError:
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK


async def send(
    channel: aio.Channel, attack: Attack, request: Message, metadata: Metadata, deadline: float | None = None
) -> grpc.StatusCode:
    """Sends the request with a gRPC deadline of `deadline` seconds (None: none)."""
    return await _outcome(_call(channel, attack, request, metadata, deadline), attack.streaming)


async def send_and_cancel(
    channel: aio.Channel, attack: Attack, request: Message, metadata: Metadata, after: float
) -> grpc.StatusCode:
    """Cancels the call `after` seconds in (mid-call, for most calls)."""
    call = _call(channel, attack, request, metadata, None)
    await asyncio.sleep(after)
    call.cancel()
    return await _outcome(call, attack.streaming)
