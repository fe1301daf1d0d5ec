"""ogpgy.notification.v1.NotificationService: validation at the edge, then the use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.pagination import PageTokens
from common.validation import Violations
from ogpgy.notification.v1 import notification_service_pb2 as pb
from ogpgy.notification.v1 import notification_service_pb2_grpc as pb_grpc
from services.notification.domain import MANDATORY, OPTIONAL, Kind, Notification, Preferences, Status
from services.notification.service import NotificationUseCases

_STATUS = {
    Status.PENDING: pb.DELIVERY_STATUS_PENDING,
    Status.SENT: pb.DELIVERY_STATUS_SENT,
    Status.FAILED: pb.DELIVERY_STATUS_FAILED,
    Status.SUPPRESSED: pb.DELIVERY_STATUS_SUPPRESSED,
}


def notification_pb(n: Notification) -> pb.Notification:
    message = pb.Notification(
        notification_id=n.notification_id,
        customer_id=n.customer_id,
        kind=n.kind.value,
        subject=n.subject,
        body=n.body,
        source_event_id=n.source_event_id,
        status=_STATUS[n.status],
        attempts=n.attempts,
        failure_reason=n.failure_reason,
        create_time=timestamp(n.created_at),
        sequence=n.sequence,
    )
    if n.sent_at is not None:
        message.send_time.CopyFrom(timestamp(n.sent_at))
    return message


def preferences_pb(p: Preferences) -> pb.NotificationPreferences:
    return pb.NotificationPreferences(customer_id=p.customer_id, opted_out_kinds=sorted(k.value for k in p.opted_out))


def _opt_outs(v: Violations, names: list[str]) -> frozenset[Kind]:
    """The kinds named, if each may be opted out of (the bank's must-send kinds may not)."""
    for i, name in enumerate(names):
        if v.check(name in Kind.__members__, f"opted_out_kinds[{i}]", f"one of {', '.join(sorted(OPTIONAL))}"):
            v.check(
                Kind(name) not in MANDATORY, f"opted_out_kinds[{i}]", f"{name} is sent to every customer whatever they prefer"
            )
    return frozenset(Kind(n) for n in names if n in Kind.__members__)


@og_component()
class NotificationApi(pb_grpc.NotificationServiceServicer):
    """ogpgy.notification.v1.NotificationService."""

    def __init__(self, service: NotificationUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    async def GetNotification(
        self, request: pb.GetNotificationRequest, context: aio.ServicerContext
    ) -> pb.GetNotificationResponse:
        return pb.GetNotificationResponse(notification=notification_pb(await self._service.get(request.notification_id)))

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: aio.ServicerContext
    ) -> pb.ListNotificationsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("notifications", request.customer_id))
        v.raise_if_any()
        found, token = await self._service.page(request.customer_id, page)
        return pb.ListNotificationsResponse(notifications=[notification_pb(n) for n in found], next_page_token=token)

    async def WatchNotifications(
        self, request: pb.WatchNotificationsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        async for notification in self._service.watch(request.customer_id, request.after_sequence):
            yield pb.WatchNotificationsResponse(notification=notification_pb(notification))

    async def GetNotificationPreferences(
        self, request: pb.GetNotificationPreferencesRequest, context: aio.ServicerContext
    ) -> pb.GetNotificationPreferencesResponse:
        return pb.GetNotificationPreferencesResponse(
            preferences=preferences_pb(await self._service.preferences(request.customer_id))
        )

    async def UpdateNotificationPreferences(
        self, request: pb.UpdateNotificationPreferencesRequest, context: aio.ServicerContext
    ) -> pb.UpdateNotificationPreferencesResponse:
        v = Violations()
        kinds = _opt_outs(v, list(request.opted_out_kinds))
        v.raise_if_any()
        # A set: the same kinds in another order are the same request.
        canonical = pb.UpdateNotificationPreferencesRequest(
            request_id=request.request_id, customer_id=request.customer_id, opted_out_kinds=sorted(k.value for k in kinds)
        )
        preferences = await self._service.set_preferences(
            request.customer_id, kinds, idempotency_key(canonical, "UpdateNotificationPreferences")
        )
        return pb.UpdateNotificationPreferencesResponse(preferences=preferences_pb(preferences))
