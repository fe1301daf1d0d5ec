"""Events identity takes in: the customers that exist (a user is linked only to one of them), and
every context's ChangeRecorded, kept as the audit trail."""

from __future__ import annotations

from datetime import UTC

from common.di import ContextInfo, og_component
from common.events.bus import EventBus
from common.events.envelope import Envelope
from common.events.incoming import Incoming, Subscriber
from og.audit.v1.audit_pb2 import ChangeRecorded
from ogpgy.customer.v1.events_pb2 import CustomerOnboarded
from services.identity.domain import AuditEvent
from services.identity.service import IdentityUseCases

INCOMING = Incoming()


@og_component()
class IdentityEventsHandler(Subscriber):
    """Both writes are idempotent by key (the customer id, the event id): redelivery changes nothing."""

    incoming = INCOMING

    def __init__(self, bus: EventBus, service: IdentityUseCases, context: ContextInfo) -> None:
        super().__init__(bus, context)
        self._service = service

    @INCOMING.on(CustomerOnboarded)
    async def onboarded(self, event: CustomerOnboarded, envelope: Envelope) -> None:
        await self._service.learn_customer(event.customer_id)

    @INCOMING.on_batch(ChangeRecorded)
    async def recorded(self, records: list[tuple[ChangeRecorded, Envelope]]) -> None:
        """A batch of records in one transaction: the trail keeps up with every context's writes."""
        await self._service.record([_audit_event(event, envelope) for event, envelope in records])


def _audit_event(event: ChangeRecorded, envelope: Envelope) -> AuditEvent:
    return AuditEvent(
        "aud_" + envelope.event_id.removeprefix("evt_"),
        event.time.ToDatetime(tzinfo=UTC),
        event.context,
        event.operation,
        event.resource,
        event.actor,
        tuple(event.on_behalf_of),
        event.request_id,
        event.service,
        event.reason,
    )
