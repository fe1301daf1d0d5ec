"""The customer context's GetCustomer as every context that reads a customer calls it: the
request, the deadline, the reason when the customer context is away, written once for their
adapters (each keeps only what its port needs from the answer)."""

from __future__ import annotations

from common.errors import NotFound
from common.grpc.remote import call
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub

CUSTOMER_CALL_TIMEOUT = 5.0


class CustomerCalls:
    """Calls to the customer context with the authority of the task making them."""

    def __init__(self, customers: CustomerServiceStub) -> None:
        self._stub = customers

    async def get(self, customer_id: str) -> cpb.Customer:
        """The customer; NOT_FOUND (or PERMISSION_DENIED) as the customer context answers."""
        answer = await call(
            self._stub.GetCustomer,
            cpb.GetCustomerRequest(customer_id=customer_id),
            within=CUSTOMER_CALL_TIMEOUT,
            unavailable="CUSTOMER_CONTEXT_UNAVAILABLE",
            silence="the customer context did not answer",
        )
        customer: cpb.Customer = answer.customer
        return customer

    async def find(self, customer_id: str) -> cpb.Customer | None:
        """The customer, or None for one the customer context does not know."""
        try:
            return await self.get(customer_id)
        except NotFound:
            return None
