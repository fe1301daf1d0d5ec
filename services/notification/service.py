"""Use cases of the notification context.

Events come in as this context alone: each becomes at most one notification (the source event id
is its key), rendered at once from a template and stored, SUPPRESSED when the customer opted out
of a kind they may refuse. The courier sends what is pending by e-mail, through the mail server's
circuit breaker, and records each outcome: sent, refused for good (a 5xx answer, no address), or
tried again later, each time later, up to a limit. One courier sends for all replicas (a lease).

Delivery is at least once: a process killed between the mail server's answer and the record sends
that message again, under the same Message-ID (the notification's id), which mailboxes fold.

Business time (when a notification was stored) comes from the Clock; delivery is scheduled on the
wall clock, so a retry is due when it is due whatever clock the business runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

from common.background import Background, stopping
from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase
from common.db.keyset import Page
from common.db.notices import Bulletin
from common.di import BaseComponent, og_component
from common.errors import AppError, FieldViolation, ValidationFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.pagination import PageRequest
from common.security.component import Security
from common.security.context import ADMIN, CUSTOMER, current_caller
from common.security.policy import denied, unknown
from services.notification.domain import Kind, Letter, Notification, Preferences, Status
from services.notification.ports import Mailer, MailRefused, MailUnavailable, Recipients, Templates
from services.notification.repository import NotificationUnit, NotificationUnits

WATCH_LOOK_SECONDS = 1.0  # a watcher looks this often for what another replica stored
COURIER_LOOK_SECONDS = 1.0  # the courier looks this often for retries that came due


@og_component()
class NotificationUseCases(BaseComponent):
    def __init__(
        self, units: NotificationUnits, templates: Templates, recipients: Recipients, clock: Clock, security: Security
    ) -> None:
        self._security = security
        self._units = units
        self._templates = templates
        self._recipients = recipients
        self._clock = clock
        self._news = Bulletin()

    # --- from events (this context alone) --------------------------------------------------

    async def notify(self, customer_id: str, kind: Kind, values: Mapping[str, str], source_event_id: str) -> Notification:
        """One notification per source event, however often the event is delivered."""
        wanted = (await self._units.read(lambda uow: uow.notifications.preferences(customer_id))).wants(kind)
        letter = self._templates.render(kind, {"customer_id": customer_id, **values})
        notification = Notification(
            new_id("ntf"),
            customer_id,
            kind,
            letter.subject,
            letter.body,
            source_event_id,
            Status.PENDING if wanted else Status.SUPPRESSED,
            self._clock.now(),
        )
        stored, new = await self._units.write(lambda uow: uow.notifications.add(notification))
        if new:
            self._news.post()
        return stored

    async def notify_account_owner(
        self, account_id: str, kind: Kind, values: Mapping[str, str], source_event_id: str
    ) -> Notification | None:
        """For an event about an account: its owner is told (the bank's own accounts tell nobody)."""
        customer_id = await self._recipients.customer_of_account(account_id)
        if not customer_id:
            return None
        return await self.notify(customer_id, kind, {"account_id": account_id, **values}, source_event_id)

    # --- reads ---------------------------------------------------------------------------------

    async def _scope(self, customer_id: str, *, action: str) -> str:
        """The customer a request is about: a customer user's own (empty means theirs), any
        existing one for an admin (empty means everyone's, where that makes sense; an unknown one
        is NOT_FOUND). Nobody else reads notifications."""
        caller = current_caller()
        if caller.has_role(ADMIN):
            if customer_id:
                await self._recipients.address_of(customer_id)  # NotFound for nobody
            return customer_id
        if caller.has_role(CUSTOMER) and caller.customer_id and customer_id in ("", caller.customer_id):
            return caller.customer_id
        raise denied(action)

    async def get(self, notification_id: str) -> Notification:
        action = "read this notification"
        found = await self._units.read(lambda uow: uow.notifications.get(notification_id))
        if found is None:
            raise unknown("notification", notification_id, action)
        await self._scope(found.customer_id, action=action)
        return found

    async def page(self, customer_id: str, request: PageRequest) -> tuple[list[Notification], str]:
        scope = await self._scope(customer_id, action="list these notifications")
        page = await self._units.read(lambda uow: uow.notifications.page(scope, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)

    async def watch(self, customer_id: str, after: int) -> AsyncIterator[Notification]:
        """Each notification after `after`, in order, once; then each new one as it is stored."""
        scope = await self._scope(customer_id, action="watch these notifications")
        token = current_caller().token
        while True:
            if token:  # a stream outlives its first check: a token expired or revoked since ends it
                self._security.verifier.verify(token)
            edition = self._news.edition()  # taken before looking: a notification stored meanwhile wakes us
            page = await self._page_after(scope, after)
            for notification in page.items:
                yield notification
                after = notification.sequence
            if page.next_after is None:
                await Bulletin.wait(edition, WATCH_LOOK_SECONDS)

    async def _page_after(self, scope: str, after: int) -> Page[Notification, int]:
        return await self._units.read(lambda uow: uow.notifications.page(scope, after, 100))

    async def preferences(self, customer_id: str) -> Preferences:
        scope = _named(await self._scope(customer_id, action="read these preferences"))
        return await self._units.read(lambda uow: uow.notifications.preferences(scope))

    async def set_preferences(self, customer_id: str, opted_out: frozenset[Kind], key: IdempotencyKey) -> Preferences:
        scope = _named(await self._scope(customer_id, action="change these preferences"))
        wanted, now = Preferences(scope, opted_out), self._clock.now()

        async def save(uow: NotificationUnit) -> Preferences:
            if await uow.claim(key, scope) is None:  # a replay answers the preferences as they are
                await uow.notifications.set_preferences(wanted, now)
            return await uow.notifications.preferences(scope)

        return await self._units.write(save)


def _named(customer_id: str) -> str:
    """Preferences are one customer's: an admin, who may mean anyone, has to say whose."""
    if not customer_id:
        raise ValidationFailed([FieldViolation("customer_id", "required for an admin: the customer whose preferences")])
    return customer_id


@og_component()
class Courier(BaseComponent):
    """Sends pending notifications, the soonest due first, as this context alone."""

    BATCH = 50

    def __init__(
        self,
        units: NotificationUnits,
        recipients: Recipients,
        mailer: Mailer,
        database: ContextDatabase,
        settings: Settings,
    ) -> None:
        self._first_retry = timedelta(seconds=settings.mail_retry_seconds)
        self._units = units
        self._recipients = recipients
        self._mailer = mailer
        self._loop = Background(
            "notification-courier",
            self._deliver_all_due,
            lambda: units.waiting(COURIER_LOOK_SECONDS),
            self.logger,
            lead=lambda: database.lead("notification-courier"),
        )

    async def start(self) -> None:
        self._loop.start()

    async def shutdown(self) -> None:
        await self._loop.stop()

    async def deliver_due(self) -> int:
        """One pass over what is due now; how many were sent."""
        if not self._mailer.accepts_calls():
            return 0
        sent = 0
        now = datetime.now(UTC)
        for notification in await self._units.read(lambda uow: uow.notifications.due(now, self.BATCH)):
            sent += await self._deliver(notification)
        return sent

    async def _deliver(self, n: Notification) -> int:
        try:
            to = await self._recipients.address_of(n.customer_id)
            if to:
                await self._mailer.send(to, Letter(n.subject, n.body), n.notification_id)
            outcome = n.sent(datetime.now(UTC)) if to else n.refused("NO_EMAIL_ADDRESS")
        except MailRefused as refused:
            outcome = n.refused(f"MAIL_REFUSED: {refused}")
        except (MailUnavailable, AppError) as passing:  # the mail server, or the customer context, did not answer
            if stopping():
                raise asyncio.CancelledError from passing  # our own shutdown cut the call: no attempt to count
            outcome = n.deferred(str(passing) or type(passing).__name__, datetime.now(UTC), self._first_retry)
        except Exception:  # a bug: this one waits (and is logged), the others go on
            self.logger.exception("delivering %s failed", n.notification_id)
            outcome = n.deferred("DELIVERY_ERROR", datetime.now(UTC), self._first_retry)
        await self._units.write(lambda uow: uow.notifications.settle(outcome))
        return int(outcome.status is Status.SENT)

    async def _deliver_all_due(self) -> None:
        while await self.deliver_due() == self.BATCH:
            pass
