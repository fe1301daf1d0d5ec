"""Handlers of other contexts' events: a verified customer gets a default account, exactly once;
a change of relationship manager changes who may see the customer's accounts."""

from __future__ import annotations

from common.di import ContextInfo, og_component
from common.events.bus import EventBus
from common.events.envelope import Envelope
from common.events.incoming import Incoming, Subscriber
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1.events_pb2 import CustomerKycReviewed, CustomerOnboarded, CustomerUpdated
from services.account.service import AccountUseCases

INCOMING = Incoming()


@og_component()
class CustomerEventsHandler(Subscriber):
    """CustomerOnboarded (VERIFIED), or CustomerKycReviewed (cleared) -> a default account; a
    customer is verified by one of them, once. Redelivery changes nothing: the account and the
    inbox record of the event are written in one transaction."""

    incoming = INCOMING

    def __init__(self, bus: EventBus, service: AccountUseCases, context: ContextInfo) -> None:
        super().__init__(bus, context)
        self._service = service

    @INCOMING.on(CustomerOnboarded)
    async def onboarded(self, event: CustomerOnboarded, envelope: Envelope) -> None:
        await self._verified(event.customer_id, event.kyc_status, envelope)

    @INCOMING.on(CustomerKycReviewed)
    async def reviewed(self, event: CustomerKycReviewed, envelope: Envelope) -> None:
        await self._verified(event.customer_id, event.kyc_status, envelope)

    @INCOMING.on(CustomerUpdated)
    async def updated(self, event: CustomerUpdated, envelope: Envelope) -> None:
        if "relationship_manager_id" in event.changed_fields:
            await self._service.forget_manager(event.customer_id)  # access follows the assignment

    async def _verified(self, customer_id: str, kyc_status: int, envelope: Envelope) -> None:
        if kyc_status != customer_pb.KYC_STATUS_VERIFIED:
            return
        if await self._service.open_default_account(customer_id, envelope.event_id, self._context.name):
            self.logger.info("default account opened for %s", customer_id)
