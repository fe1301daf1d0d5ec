"""Handlers of other contexts' events: a verified customer gets a default account, exactly once."""

from __future__ import annotations

from common.di import BaseComponent, og_component
from common.events.bus import EventBus, Subscription
from common.events.envelope import Envelope
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1.events_pb2 import CustomerKycReviewed, CustomerOnboarded, CustomerUpdated
from services.account.service import CONSUMER, AccountApplicationService


@og_component()
class CustomerEventsHandler(BaseComponent):
    """CustomerOnboarded (VERIFIED), or CustomerKycReviewed (cleared) -> a default
    account; a customer is verified by one of them, once. Redelivery changes nothing: the account
    and the inbox record of the event are written in one transaction."""

    def __init__(self, bus: EventBus, service: AccountApplicationService) -> None:
        self._bus = bus
        self._service = service
        self._subscription: Subscription | None = None

    async def initialize(self) -> None:
        self._subscription = await self._bus.subscribe(
            [CustomerOnboarded, CustomerKycReviewed, CustomerUpdated], CONSUMER, self.on_event
        )

    async def shutdown(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()

    async def on_event(self, envelope: Envelope) -> None:
        if envelope.event_type == CustomerUpdated.DESCRIPTOR.full_name:
            updated = envelope.decode(CustomerUpdated)
            if "relationship_manager_id" in updated.changed_fields:
                await self._service.forget_manager(updated.customer_id)  # access follows the assignment
            return
        reviewed = envelope.event_type == CustomerKycReviewed.DESCRIPTOR.full_name
        event = envelope.decode(CustomerKycReviewed) if reviewed else envelope.decode(CustomerOnboarded)
        if event.kyc_status == customer_pb.KYC_STATUS_VERIFIED:  # onboarded verified, or cleared on review
            opened = await self._service.open_default_account(event.customer_id, envelope.event_id)
            if opened:
                self.logger.info("default account opened for %s", event.customer_id)
