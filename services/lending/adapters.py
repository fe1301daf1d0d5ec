"""The lending context's side of its contracts: the account and customer contexts behind their
ports, and its events as the messages it publishes."""

from __future__ import annotations

from common.di import BaseComponent, og_component
from common.errors import NotFound
from common.money import Money
from common.security.context import as_itself
from kernel.accounts import AccountCalls
from kernel.convert import money_pb
from kernel.customers import CustomerCalls
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.lending.ports import Accounts, Customers, Debit, DebitOutcome, HeldFunds, PayoutAccount


@og_component()
class AccountsClient(BaseComponent, Accounts):
    """The accounts, as the account context's AccountService answers."""

    def __init__(self, accounts: AccountServiceStub) -> None:
        self._calls = AccountCalls(accounts)

    async def payout_account(self, account_id: str) -> PayoutAccount:
        account = await self._calls.get_account(account_id)
        return PayoutAccount(account.customer_id, account.balance.currency_code)

    async def loan_book(self, currency: str) -> str:
        return await self._calls.internal_account(apb.INTERNAL_ACCOUNT_LOAN_PRINCIPAL, currency)

    async def debit(self, debits: list[Debit]) -> list[DebitOutcome]:
        charges = await self._calls.post_charges([_charge(d) for d in debits])
        return [DebitOutcome(c.request_id, c.status == apb.CHARGE_STATUS_POSTED, c.rejection_reason) for c in charges]

    async def debit_taken(self, request_id: str) -> bool:
        try:
            with as_itself():
                await self._calls.lookup_charge(request_id)
        except NotFound:
            return False
        return True

    async def place_hold(self, request_id: str, debtor: str, creditor: str, amount: Money, description: str) -> str:
        return (await self._calls.place_hold(request_id, debtor, creditor, amount, description)).hold_id

    async def lookup_hold(self, request_id: str) -> str:
        return (await self._calls.lookup_hold(request_id)).hold_id

    async def held_funds(self, hold_id: str) -> HeldFunds:
        hold = await self._calls.get_hold(hold_id)
        return HeldFunds(hold.hold_id, hold.transfer_id if hold.status == apb.HOLD_STATUS_CAPTURED else "")

    async def capture_hold(self, request_id: str, hold_id: str) -> str:
        return await self._calls.capture_hold(request_id, hold_id)

    async def release_hold(self, request_id: str, hold_id: str) -> None:
        await self._calls.release_hold(request_id, hold_id)

    async def reverse_transfer(self, request_id: str, transfer_id: str, reason: str) -> None:
        await self._calls.reverse_transfer(request_id, transfer_id, reason)


def _charge(debit: Debit) -> apb.ChargeOrder:
    lines = (
        (apb.INTERNAL_ACCOUNT_PENALTY_INCOME, debit.late_fees),
        (apb.INTERNAL_ACCOUNT_INTEREST_INCOME, debit.interest),
        (apb.INTERNAL_ACCOUNT_LOAN_PRINCIPAL, debit.principal),
    )
    return apb.ChargeOrder(
        request_id=debit.request_id,
        account_id=debit.account_id,
        lines=[apb.ChargeLine(internal_account=kind, amount=money_pb(amount)) for kind, amount in lines if amount.minor],
        description=debit.description,
    )


@og_component()
class CustomerDirectory(BaseComponent, Customers):
    """Customers, as the customer context's GetCustomer answers this context itself."""

    def __init__(self, customers: CustomerServiceStub) -> None:
        self._customers = CustomerCalls(customers)

    async def _customer(self, customer_id: str) -> cpb.Customer | None:
        with as_itself():
            return await self._customers.find(customer_id)

    async def exists(self, customer_id: str) -> bool:
        return await self._customer(customer_id) is not None

    async def manager_of(self, customer_id: str) -> str:
        customer = await self._customer(customer_id)
        return customer.relationship_manager_id if customer is not None else ""
