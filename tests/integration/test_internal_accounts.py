"""The bank's own ledger accounts move only through the contexts their contract names: a customer,
or an admin acting directly, who pays into (or out of) one by Transfer, PlaceHold, a payment or a
charge is refused before anything is written. Before, any customer could pay into all of them
(a payment to the clearing account completed, and the loan book no longer equalled minus the
principal outstanding)."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
from grpc import aio

from common.config import Settings
from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.account.domain import InternalAccount
from tests.bank_helpers import Bank, create_user, eur
from tests.conftest import issue_token
from tests.grpc_assert import error_reason
from tests.ledger_checks import broken_ledger

PASSWORD = "a-long-password-1"


async def _refused(call: Awaitable[object]) -> str:
    return (await error_reason(call, grpc.StatusCode.PERMISSION_DENIED)).reason


async def _try_every_movement(channel: aio.Channel, account: str, tag: str) -> dict[str, str]:
    """Each movement into and out of each internal account: the reason each was refused with."""
    accounts, payments = agrpc.AccountServiceStub(channel), pgrpc.PaymentServiceStub(channel)
    reasons: dict[str, str] = {}
    for kind in InternalAccount:
        internal = kind.account_id("EUR")
        one_cent, rid = eur("0.01"), f"{tag}-{kind.value}"
        calls: dict[str, Awaitable[object]] = {
            "Transfer in": accounts.Transfer(
                apb.TransferRequest(request_id=f"{rid}-t", debit_account_id=account, credit_account_id=internal, amount=one_cent)
            ),
            "Transfer out": accounts.Transfer(
                apb.TransferRequest(request_id=f"{rid}-o", debit_account_id=internal, credit_account_id=account, amount=one_cent)
            ),
            "PlaceHold in": accounts.PlaceHold(
                apb.PlaceHoldRequest(request_id=f"{rid}-h", debit_account_id=account, credit_account_id=internal, amount=one_cent)
            ),
            "PlaceHold captured in": accounts.PlaceHold(
                apb.PlaceHoldRequest(
                    request_id=f"{rid}-c", debit_account_id=account, credit_account_id=internal, amount=one_cent, capture=True
                )
            ),
            "payment to it": payments.CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=f"{rid}-p",
                    debtor_account_id=account,
                    internal=ppb.InternalBeneficiary(account_id=internal),
                    amount=one_cent,
                    reference="into the bank's books",
                )
            ),
        }
        for name, call in calls.items():
            reasons[f"{name} {kind.value}"] = await _refused(call)
    return reasons


async def _cash_moves(channel: aio.Channel, account: str) -> dict[str, str]:
    """An admin's Deposit into, Withdraw from, and payment out of each of the bank's accounts."""
    accounts, payments, reasons = agrpc.AccountServiceStub(channel), pgrpc.PaymentServiceStub(channel), {}
    for kind in InternalAccount:
        pay_out = ppb.CreatePaymentRequest(
            request_id=f"pay-out-{kind.value}",
            debtor_account_id=kind.account_id("EUR"),
            internal=ppb.InternalBeneficiary(account_id=account),
            amount=eur("0.01"),
            reference="out of the bank's books",
        )
        reasons[f"payment out of {kind.value}"] = await _refused(payments.CreatePayment(pay_out))
        if kind is InternalAccount.CASH:
            continue
        internal = kind.account_id("EUR")
        deposit = apb.DepositRequest(request_id=f"dep-{kind.value}", account_id=internal, amount=eur("0.01"))
        withdraw = apb.WithdrawRequest(request_id=f"wdr-{kind.value}", account_id=internal, amount=eur("0.01"))
        reasons[f"Deposit into {kind.value}"] = await _refused(accounts.Deposit(deposit))
        reasons[f"Withdraw from {kind.value}"] = await _refused(accounts.Withdraw(withdraw))
    return reasons


async def test_nobody_but_the_named_context_moves_the_banks_own_accounts(
    bank: RunningBank, channel: aio.Channel, settings: Settings
) -> None:
    admin = Bank(channel)
    customer = await admin.verified_customer("books")
    account = (await admin.default_account(customer)).account_id
    await admin.deposit(account, "100.00", "books")
    await create_user(igrpc.IdentityServiceStub(channel), "books.owner", ipb.ROLE_CUSTOMER, PASSWORD, customer)
    before = [await admin.balance(kind.account_id("EUR")) for kind in InternalAccount] + [await admin.balance(account)]
    async with bearer_channel(bank.target, await issue_token(bank.target, "books.owner", PASSWORD)) as as_customer:
        by_customer = await _try_every_movement(as_customer, account, "cus")
    by_admin = await _try_every_movement(channel, account, "adm") | await _cash_moves(channel, account)
    assert set(by_customer.values()) == {"INTERNAL_ACCOUNT"}, by_customer
    assert set(by_admin.values()) == {"INTERNAL_ACCOUNT"}, by_admin
    after = [await admin.balance(kind.account_id("EUR")) for kind in InternalAccount] + [await admin.balance(account)]
    assert after == before, "nothing was written"
    assert await broken_ledger(settings) == {}
