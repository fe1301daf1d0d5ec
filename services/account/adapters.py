"""The account context's side of its contracts: the customer context behind the Customers port,
its own enums as the contract spells them, and its events as the messages it publishes."""

from __future__ import annotations

from common.di import BaseComponent, og_component
from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from common.security.context import as_itself
from kernel.convert import ProtoEnum, money_pb
from kernel.customers import CustomerCalls
from ogpgy.account.v1 import account_service_pb2 as pb
from ogpgy.account.v1 import events_pb2
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.account.domain import (
    AccountClosed,
    AccountOpened,
    AccountStatus,
    AccountType,
    HoldStatus,
    InternalAccount,
    TransferPosted,
)
from services.account.ports import Customers, CustomerStanding

ACCOUNT_TYPE = ProtoEnum(AccountType, pb.AccountType, "ACCOUNT_TYPE_")
ACCOUNT_STATUS = ProtoEnum(AccountStatus, pb.AccountStatus, "ACCOUNT_STATUS_")
HOLD_STATUS = ProtoEnum(HoldStatus, pb.HoldStatus, "HOLD_STATUS_")
INTERNAL_ACCOUNT = ProtoEnum(InternalAccount, pb.InternalAccount, "INTERNAL_ACCOUNT_")


@og_component()
class CustomerDirectory(BaseComponent, Customers):
    """Customers, as the customer context answers GetCustomer."""

    def __init__(self, customers: CustomerServiceStub) -> None:
        self._customers = CustomerCalls(customers)

    async def standing(self, customer_id: str) -> CustomerStanding:
        customer = await self._customers.get(customer_id)
        return CustomerStanding(customer.kyc.status == customer_pb.KYC_STATUS_VERIFIED, customer.relationship_manager_id)

    async def relationship_manager(self, customer_id: str) -> str | None:
        with as_itself():
            customer = await self._customers.find(customer_id)
        return customer.relationship_manager_id if customer is not None else None


OUTGOING = Outgoing()
OUTGOING.route(
    AccountOpened,
    events_pb2.AccountOpened,
    lambda e: events_pb2.AccountOpened(
        account_id=e.account.account_id,
        customer_id=e.account.customer_id,
        type=ACCOUNT_TYPE.pb(e.account.type),
        open_time=timestamp(e.account.opened_at),
    ),
)
OUTGOING.route(
    AccountClosed,
    events_pb2.AccountClosed,
    lambda e: events_pb2.AccountClosed(account_id=e.account_id, customer_id=e.customer_id, close_time=timestamp(e.at)),
)
OUTGOING.route(
    TransferPosted,
    events_pb2.TransferPosted,
    lambda e: events_pb2.TransferPosted(
        transfer_id=e.transfer.transfer_id,
        debit_account_id=e.transfer.debit_account_id,
        credit_account_id=e.transfer.credit_account_id,
        amount=money_pb(e.transfer.amount),
        reverses_transfer_id=e.transfer.reverses_transfer_id,
        post_time=timestamp(e.transfer.posted_at),
    ),
)
