"""The account context's contract as every context that moves money calls it (holds placed for a
process of theirs, the bank's own accounts, charges, entries): the requests, the deadline and the
translation of answers into AppErrors, written once for their adapters. Each RPC a caller uses
is a typed method here; no adapter reaches the stub."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from common.grpc.remote import call
from common.money import Money
from kernel.convert import money_pb
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub

R = TypeVar("R")
ACCOUNT_CALL_TIMEOUT = 5.0


class AccountCalls:
    """Calls to the account context with the authority of the task making them."""

    def __init__(self, accounts: AccountServiceStub) -> None:
        self._stub = accounts
        self._internal: dict[tuple[int, str], str] = {}  # (kind, currency) -> account id: never changes

    async def _call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        return await call(
            method,
            request,
            within=ACCOUNT_CALL_TIMEOUT,
            unavailable="ACCOUNTS_UNAVAILABLE",
            silence="the account context did not answer",
        )

    async def internal_account(self, kind: apb.InternalAccount.ValueType, currency: str) -> str:
        """One of the bank's own accounts, asked once per kind and currency."""
        if (kind, currency) not in self._internal:
            request = apb.GetInternalAccountRequest(internal_account=kind, currency_code=currency)
            self._internal[(kind, currency)] = (await self._call(self._stub.GetInternalAccount, request)).account_id
        return self._internal[(kind, currency)]

    async def place_hold(
        self,
        request_id: str,
        debtor: str,
        creditor: str,
        amount: Money,
        description: str,
        *,
        capture: bool = False,
        remittance: tuple[str, str, str] = ("", "", ""),
    ) -> apb.Hold:
        """`remittance`: the payee's name and IBAN and the reference, kept with the entries."""
        name, iban, reference = remittance
        request = apb.PlaceHoldRequest(
            request_id=request_id,
            debit_account_id=debtor,
            credit_account_id=creditor,
            amount=money_pb(amount),
            description=description,
            capture=capture,
            counterparty_name=name,
            counterparty_iban=iban,
            reference=reference,
        )
        hold: apb.Hold = (await self._call(self._stub.PlaceHold, request)).hold
        return hold

    async def place_holds(self, orders: list[apb.PlaceHoldRequest]) -> list[apb.Hold]:
        """Every order's hold, all placed together or none (PlaceHolds)."""
        answer = await self._call(self._stub.PlaceHolds, apb.PlaceHoldsRequest(holds=orders))
        return list(answer.holds)

    async def lookup_hold(self, request_id: str) -> apb.Hold:
        hold: apb.Hold = (await self._call(self._stub.LookupHold, apb.LookupHoldRequest(request_id=request_id))).hold
        return hold

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        captured = await self._call(self._stub.CaptureHold, apb.CaptureHoldRequest(request_id=request_id, hold_id=hold_id))
        transfer_id: str = captured.transfer.transfer_id
        return transfer_id

    async def release_hold(self, request_id: str, hold_id: str) -> None:
        await self._call(self._stub.ReleaseHold, apb.ReleaseHoldRequest(request_id=request_id, hold_id=hold_id))

    async def check_access(self, account_id: str, access: apb.AccountAccess.ValueType) -> str:
        """Refuses (as the account context decides) unless the caller has `access` to the account;
        the account's currency."""
        request = apb.CheckAccountAccessRequest(account_id=account_id, access=access)
        currency: str = (await self._call(self._stub.CheckAccountAccess, request)).currency_code
        return currency

    async def get_account(self, account_id: str) -> apb.Account:
        account: apb.Account = (await self._call(self._stub.GetAccount, apb.GetAccountRequest(account_id=account_id))).account
        return account

    async def entries(self, account_id: str, page_token: str, page_size: int = 500) -> apb.ListEntriesResponse:
        request = apb.ListEntriesRequest(account_id=account_id, page_size=page_size, page_token=page_token)
        page: apb.ListEntriesResponse = await self._call(self._stub.ListEntries, request)
        return page

    async def post_charges(self, charges: list[apb.ChargeOrder]) -> list[apb.Charge]:
        answer = await self._call(self._stub.PostCharges, apb.PostChargesRequest(charges=charges))
        return list(answer.charges)

    async def lookup_charge(self, request_id: str) -> apb.Charge:
        charge: apb.Charge = (await self._call(self._stub.LookupCharge, apb.LookupChargeRequest(request_id=request_id))).charge
        return charge

    async def get_hold(self, hold_id: str) -> apb.Hold:
        hold: apb.Hold = (await self._call(self._stub.GetHold, apb.GetHoldRequest(hold_id=hold_id))).hold
        return hold

    async def reverse_transfer(self, request_id: str, transfer_id: str, reason: str) -> None:
        request = apb.ReverseTransferRequest(request_id=request_id, transfer_id=transfer_id, reason=reason)
        await self._call(self._stub.ReverseTransfer, request)
