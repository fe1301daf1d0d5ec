"""A notification's delivery rules without a database: retries each twice as late up to a bound,
a final refusal, and which kinds a customer may refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notification.domain import MANDATORY, MAX_ATTEMPTS, Kind, Notification, Preferences, Status

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _pending() -> Notification:
    return Notification("ntf_1", "cus_1", Kind.WELCOME, "s", "b", "evt_1", Status.PENDING, NOW)


def test_a_passing_failure_is_tried_again_twice_as_late_each_time_then_given_up() -> None:
    n, delays = _pending(), []
    while n.status is Status.PENDING:
        n = n.deferred("451 busy", NOW, timedelta(seconds=1))
        if n.next_attempt_at is not None and n.status is Status.PENDING:
            delays.append((n.next_attempt_at - NOW).total_seconds())
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert (n.status, n.attempts, n.failure_reason) == (Status.FAILED, MAX_ATTEMPTS, "GAVE_UP: 451 busy")


def test_the_delay_is_bounded() -> None:
    n = _pending()
    for _ in range(MAX_ATTEMPTS - 2):
        n = n.deferred("silence", NOW, timedelta(minutes=5))
    assert n.next_attempt_at == NOW + timedelta(minutes=10)


def test_a_refusal_is_final_and_a_delivery_clears_the_last_failure() -> None:
    refused = _pending().refused("MAIL_REFUSED: 550 no such mailbox")
    assert (refused.status, refused.attempts, refused.next_attempt_at) == (Status.FAILED, 1, None)
    sent = _pending().deferred("451", NOW, timedelta(seconds=1)).sent(NOW)
    assert (sent.status, sent.attempts, sent.failure_reason, sent.sent_at) == (Status.SENT, 2, "", NOW)


def test_what_the_bank_must_send_is_sent_whatever_the_customer_prefers() -> None:
    everything = Preferences("cus_1", frozenset(Kind))
    assert {kind for kind in Kind if everything.wants(kind)} == MANDATORY
    assert Preferences("cus_1").wants(Kind.PAYMENT_COMPLETED)
