"""The account context's side of its contracts: the customer context behind the Customers port,
its own enums as the contract spells them, and its events as the messages it publishes."""

from __future__ import annotations

from common.di import BaseComponent, og_component
from common.security.context import as_itself
from kernel.customers import CustomerCalls
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.account.ports import Customers, CustomerStanding


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
