"""The notification context over real gRPC and a real SMTP server (the mail simulator beside the
bank), on SQLite and on PostgreSQL: what customers are told, exactly once per event, as they
prefer, and what becomes of a message the mail server does not take."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.events.envelope import Envelope
from common.grpc.client import bearer_channel
from mesh.embedded import RunningBank, start_embedded
from mesh.mail_simulator import MailSimulator
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.events_pb2 import CustomerOnboarded
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.notification.v1 import notification_service_pb2 as npb
from ogpgy.notification.v1 import notification_service_pb2_grpc as ngrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.notification.events import NotificationEventsHandler
from tests.bank_helpers import Bank, create_user, eur, eventually
from tests.conftest import TODAY, issue_token
from tests.grpc_assert import error_reason, field_violations, rpc_error

PASSWORD = "password-of-a-customer"


@pytest.fixture
async def bank(settings: Settings) -> AsyncIterator[RunningBank]:
    """Retries and the mail server's circuit on a test's time scale."""
    quick = settings.model_copy(update={"mail_retry_seconds": 0.05, "breaker_fail_max": 3, "breaker_reset_seconds": 0.2})

    def fixed_clock(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, FixedClock(TODAY))

    running = await start_embedded(quick, customize=fixed_clock)
    yield running
    await running.stop(grace=1)


@pytest.fixture
def mail(bank: RunningBank) -> MailSimulator:
    assert bank.mail is not None, "embedded mode serves the mail simulator when no mail server is configured"
    return bank.mail


def _stub(channel: aio.Channel) -> ngrpc.NotificationServiceStub:
    return ngrpc.NotificationServiceStub(channel)


async def _notifications(channel: aio.Channel, customer_id: str) -> list[npb.Notification]:
    return list((await _stub(channel).ListNotifications(npb.ListNotificationsRequest(customer_id=customer_id))).notifications)


async def _settled(channel: aio.Channel, customer_id: str, count: int) -> list[npb.Notification]:
    """The customer's first `count` notifications once none of them is PENDING any more."""

    async def done() -> bool:
        found = await _notifications(channel, customer_id)
        return len(found) >= count and all(n.status != npb.DELIVERY_STATUS_PENDING for n in found[:count])

    await eventually(done, what=f"{count} notification(s) of {customer_id} settled")
    return (await _notifications(channel, customer_id))[:count]


async def test_a_new_customer_is_welcomed_by_mail_once(bank: RunningBank, channel: aio.Channel, mail: MailSimulator) -> None:
    customer = await Bank(channel).verified_customer("welcome")
    [welcome] = await _settled(channel, customer, 1)
    assert (welcome.kind, welcome.status) == ("WELCOME", npb.DELIVERY_STATUS_SENT)
    assert welcome.send_time.seconds > 0 and welcome.attempts == 1 and welcome.sequence > 0
    delivered = mail.mailbox()[f"<{welcome.notification_id}@ogpgy.bank>"]
    assert delivered.to == ("ada@example.com",) and delivered.subject == "Welcome to OgPgy Bank"
    assert customer in delivered.body and "identity is verified" in delivered.body
    got = (await _stub(channel).GetNotification(npb.GetNotificationRequest(notification_id=welcome.notification_id))).notification
    assert got == welcome


async def test_an_event_delivered_twice_is_one_notification_and_one_message(
    bank: RunningBank, channel: aio.Channel, mail: MailSimulator
) -> None:
    customer = await Bank(channel).verified_customer("twice")
    [welcome] = await _settled(channel, customer, 1)
    handler = bank.contexts["notification"].resolve(NotificationEventsHandler)
    event = CustomerOnboarded(customer_id=customer, kyc_status=cpb.KYC_STATUS_VERIFIED)
    envelope = Envelope(welcome.source_event_id, "og.customer.v1.CustomerOnboarded", event.SerializeToString(), "", {})
    await handler.onboarded(event, envelope)  # the bus delivers it again (a crash before the ack)
    await asyncio.sleep(0.3)  # the courier would have sent a second message by now
    assert [n.notification_id for n in await _notifications(channel, customer)] == [welcome.notification_id]
    assert sum(1 for m in mail.received if customer in m.body) == 1


async def test_payments_are_told_to_the_payer_and_opt_outs_are_kept(
    bank: RunningBank, channel: aio.Channel, mail: MailSimulator
) -> None:
    admin = Bank(channel)
    payer, payee = await admin.verified_customer("payer"), await admin.verified_customer("payee")
    payer_account = (await admin.default_account(payer)).account_id
    payee_account = (await admin.default_account(payee)).account_id
    await admin.deposit(payer_account, "100.00", "payer")
    await create_user(igrpc.IdentityServiceStub(channel), "payer", ipb.ROLE_CUSTOMER, PASSWORD, payer)
    async with bearer_channel(bank.target, await issue_token(bank.target, "payer", PASSWORD)) as own:
        payments = pgrpc.PaymentServiceStub(own)

        async def pay(tag: str) -> None:
            await payments.CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=tag,
                    debtor_account_id=payer_account,
                    amount=eur("10.00"),
                    internal=ppb.InternalBeneficiary(account_id=payee_account),
                )
            )

        await pay("first")
        _, paid = await _settled(own, "", 2)  # her welcome and this: her own, without naming herself
        assert (paid.kind, paid.status) == ("PAYMENT_COMPLETED", npb.DELIVERY_STATUS_SENT)
        assert "10.00 EUR" in paid.body and payer_account in paid.body
        preferences = _stub(own)
        must = npb.UpdateNotificationPreferencesRequest(request_id="p-1", opted_out_kinds=["PAYMENT_FAILED"])
        assert set(await field_violations(preferences.UpdateNotificationPreferences(must))) == {"opted_out_kinds[0]"}
        update = npb.UpdateNotificationPreferencesRequest(request_id="p-2", opted_out_kinds=["PAYMENT_COMPLETED"])
        changed = (await preferences.UpdateNotificationPreferences(update)).preferences
        assert (changed.customer_id, list(changed.opted_out_kinds)) == (payer, ["PAYMENT_COMPLETED"])
        assert (await preferences.UpdateNotificationPreferences(update)).preferences == changed, "a retry answers the same"
        both = ["PAYMENT_QUEUED", "PAYMENT_COMPLETED"]
        wider_request = npb.UpdateNotificationPreferencesRequest(request_id="p-3", opted_out_kinds=both)
        wider = (await preferences.UpdateNotificationPreferences(wider_request)).preferences
        reordered = npb.UpdateNotificationPreferencesRequest(request_id="p-3", opted_out_kinds=both[::-1])
        assert (await preferences.UpdateNotificationPreferences(reordered)).preferences == wider, "a set, in any order"
        await pay("second")
        *_, quiet = await _settled(own, "", 3)
        assert (quiet.kind, quiet.status, quiet.attempts) == ("PAYMENT_COMPLETED", npb.DELIVERY_STATUS_SUPPRESSED, 0)
        assert f"<{quiet.notification_id}@ogpgy.bank>" not in mail.mailbox()
        others = preferences.GetNotificationPreferences(npb.GetNotificationPreferencesRequest(customer_id=payee))
        assert (await error_reason(others, grpc.StatusCode.PERMISSION_DENIED)).reason == "ACCESS_DENIED"
        theirs = preferences.ListNotifications(npb.ListNotificationsRequest(customer_id=payee))
        assert (await error_reason(theirs, grpc.StatusCode.PERMISSION_DENIED)).reason == "ACCESS_DENIED"
        [payees_welcome] = await _settled(channel, payee, 1)
        by_id = preferences.GetNotification(npb.GetNotificationRequest(notification_id=payees_welcome.notification_id))
        assert (await error_reason(by_id, grpc.StatusCode.PERMISSION_DENIED)).reason == "ACCESS_DENIED"
    whose = _stub(channel).GetNotificationPreferences(npb.GetNotificationPreferencesRequest())
    assert set(await field_violations(whose)) == {"customer_id"}, "an admin names the customer"
    nobody = _stub(channel).ListNotifications(npb.ListNotificationsRequest(customer_id="cus_00000000000000000000000000"))
    await rpc_error(nobody, grpc.StatusCode.NOT_FOUND)


async def test_a_mail_server_that_is_away_gets_the_message_when_it_is_back(
    bank: RunningBank, channel: aio.Channel, mail: MailSimulator
) -> None:
    await mail.go_down()
    customer = await Bank(channel).verified_customer("away")

    async def tried() -> bool:
        found = await _notifications(channel, customer)
        return bool(found) and found[0].attempts >= 2 and found[0].status == npb.DELIVERY_STATUS_PENDING

    await eventually(tried, what="attempts while the mail server is away")
    await mail.come_back()
    [welcome] = await _settled(channel, customer, 1)
    assert welcome.status == npb.DELIVERY_STATUS_SENT and welcome.failure_reason == ""
    assert f"<{welcome.notification_id}@ogpgy.bank>" in mail.mailbox()


async def test_4xx_answers_are_retried_and_5xx_answers_are_final(
    bank: RunningBank, channel: aio.Channel, mail: MailSimulator
) -> None:
    mail.faults.temporary_failure_rate = 1.0
    busy = await Bank(channel).verified_customer("busy")

    async def deferred() -> bool:
        found = await _notifications(channel, busy)
        return bool(found) and found[0].attempts >= 1 and found[0].failure_reason.startswith("451")

    await eventually(deferred, what="a 451 answer deferring the welcome")
    mail.faults.temporary_failure_rate = 0.0
    [sent] = await _settled(channel, busy, 1)
    assert sent.status == npb.DELIVERY_STATUS_SENT
    mail.faults.refused_recipients = frozenset({"ada@example.com"})
    refused = await Bank(channel).verified_customer("refused")
    [failed] = await _settled(channel, refused, 1)
    assert failed.status == npb.DELIVERY_STATUS_FAILED and failed.failure_reason.startswith("MAIL_REFUSED: 550")
    assert failed.attempts == 1, "a permanent refusal is not tried again"


async def test_watch_streams_what_is_stored_then_what_comes_and_resumes_from_a_cursor(
    bank: RunningBank, channel: aio.Channel
) -> None:
    admin = Bank(channel)
    customer = await admin.verified_customer("watch")
    [welcome] = await _settled(channel, customer, 1)
    stream = _stub(channel).WatchNotifications(npb.WatchNotificationsRequest(customer_id=customer))
    first = await stream.read()
    assert first.notification.notification_id == welcome.notification_id
    account = (await admin.default_account(customer)).account_id
    await admin.deposit(account, "50.00", "watch")  # no notification: deposits are not told
    other = await admin.verified_customer("watch-other")
    del other  # another customer's welcome is not in this stream
    handler = bank.contexts["notification"].resolve(NotificationEventsHandler)
    event = CustomerOnboarded(customer_id=customer, kyc_status=cpb.KYC_STATUS_REVIEW)
    await handler.onboarded(event, Envelope("evt_watch-second", "og.customer.v1.CustomerOnboarded", b"", "", {}))
    second = await asyncio.wait_for(stream.read(), 10)
    assert second.notification.source_event_id == "evt_watch-second" and second.notification.customer_id == customer
    stream.cancel()
    resumed = _stub(channel).WatchNotifications(
        npb.WatchNotificationsRequest(customer_id=customer, after_sequence=first.notification.sequence)
    )
    again = await asyncio.wait_for(resumed.read(), 10)
    assert again.notification.notification_id == second.notification.notification_id
    resumed.cancel()
    bad = _stub(channel).WatchNotifications(npb.WatchNotificationsRequest(customer_id=customer, after_sequence=-1))
    assert set(await field_violations(bad.read())) == {"after_sequence"}


async def test_a_watch_ends_when_its_users_tokens_are_revoked(bank: RunningBank, channel: aio.Channel) -> None:
    customer = await Bank(channel).verified_customer("revoked")
    identity = igrpc.IdentityServiceStub(channel)
    user = await create_user(identity, "revoked", ipb.ROLE_CUSTOMER, PASSWORD, customer)
    async with bearer_channel(bank.target, await issue_token(bank.target, "revoked", PASSWORD)) as own:
        stream = _stub(own).WatchNotifications(npb.WatchNotificationsRequest())
        await asyncio.wait_for(stream.read(), 10)  # the welcome
        await identity.DisableUser(ipb.DisableUserRequest(request_id="disable-revoked", user_id=user))
        ended = await error_reason(asyncio.wait_for(stream.read(), 10), grpc.StatusCode.UNAUTHENTICATED)
        assert ended.reason == "TOKEN_REVOKED"
