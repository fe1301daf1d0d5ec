"""Notifications: what a customer is told, which kinds they may refuse, and when a delivery that
did not go through is tried again. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


class Kind(enum.StrEnum):
    WELCOME = "WELCOME"
    PAYMENT_COMPLETED = "PAYMENT_COMPLETED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    PAYMENT_QUEUED = "PAYMENT_QUEUED"
    LOAN_DISBURSED = "LOAN_DISBURSED"
    LOAN_DISBURSEMENT_FAILED = "LOAN_DISBURSEMENT_FAILED"
    LOAN_REPAID = "LOAN_REPAID"
    INSTALLMENT_OVERDUE = "INSTALLMENT_OVERDUE"
    LOAN_PAID_OFF = "LOAN_PAID_OFF"


# What the bank must tell whatever the customer prefers: money that did not move as asked, money
# lent, money owed late (with its fee), and a debt ended.
MANDATORY = frozenset(
    {Kind.PAYMENT_FAILED, Kind.LOAN_DISBURSED, Kind.LOAN_DISBURSEMENT_FAILED, Kind.INSTALLMENT_OVERDUE, Kind.LOAN_PAID_OFF}
)
OPTIONAL = frozenset(Kind) - MANDATORY


class Status(enum.StrEnum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    SUPPRESSED = "SUPPRESSED"


MAX_ATTEMPTS = 10
LAST_RETRY = timedelta(minutes=10)


@dataclass(frozen=True)
class Notification:
    notification_id: str
    customer_id: str
    kind: Kind
    subject: str
    body: str
    source_event_id: str
    status: Status
    created_at: datetime
    attempts: int = 0
    failure_reason: str = ""
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    sequence: int = 0  # assigned by the store

    def sent(self, at: datetime) -> Notification:
        return replace(self, status=Status.SENT, attempts=self.attempts + 1, sent_at=at, failure_reason="", next_attempt_at=None)

    def refused(self, reason: str) -> Notification:
        """Refused for good by the mail server (a 5xx answer, no address): never tried again."""
        return replace(self, status=Status.FAILED, attempts=self.attempts + 1, failure_reason=reason, next_attempt_at=None)

    def deferred(self, reason: str, now: datetime, first_retry: timedelta) -> Notification:
        """A passing failure: tried again later, each time twice as late, until MAX_ATTEMPTS."""
        attempts = self.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            return replace(self, status=Status.FAILED, attempts=attempts, failure_reason=f"GAVE_UP: {reason}")
        delay = min(first_retry * 2 ** (attempts - 1), LAST_RETRY)
        return replace(self, attempts=attempts, failure_reason=reason, next_attempt_at=now + delay)


@dataclass(frozen=True)
class Letter:
    """A rendered notification: what the template made of the event."""

    subject: str
    body: str


@dataclass(frozen=True)
class Preferences:
    customer_id: str
    opted_out: frozenset[Kind] = frozenset()

    def wants(self, kind: Kind) -> bool:
        return kind in MANDATORY or kind not in self.opted_out
