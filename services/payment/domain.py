"""Payments and fraud screening. Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from common.errors import PreconditionFailed
from common.four_eyes import Approval, approval
from common.money import Money
from common.validation import Violations


class PaymentStatus(enum.Enum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    NEEDS_OPERATOR = "NEEDS_OPERATOR"  # stopped where only a person can go on; never retried by itself
    REFUNDED = "REFUNDED"  # an operator gave the held funds back: nothing left the debtor's account


FINAL = frozenset(
    {PaymentStatus.COMPLETED, PaymentStatus.FAILED, PaymentStatus.REJECTED, PaymentStatus.NEEDS_OPERATOR, PaymentStatus.REFUNDED}
)
RETRY_BASE = timedelta(seconds=0.2)
RETRY_MAX = timedelta(seconds=60)


@dataclass(frozen=True)
class Beneficiary:
    account_id: str = ""  # internal
    iban: str = ""  # external
    name: str = ""

    @property
    def external(self) -> bool:
        return bool(self.iban)


@dataclass(frozen=True)
class Payment:
    payment_id: str
    debtor_account_id: str
    beneficiary: Beneficiary
    amount: Money
    reference: str
    status: PaymentStatus
    created_at: datetime
    updated_at: datetime
    failure_reason: str = ""
    hold_id: str = ""
    transfer_id: str = ""
    authorized_by: str = ""  # the authority verified when the request was handled ("usr_1 via ...")
    attempts: int = 0  # background attempts that failed for a passing reason
    next_attempt_at: datetime | None = None  # None: due now
    refund_first_approver: str = ""  # the admin whose refund waits for a second one (four eyes)
    refund_decided_by: str = ""  # the admin whose approval decided the refund: the hold is to be released

    @property
    def statement_text(self) -> str:
        """What the ledger's entries of the payment say (the hold's description): to another bank,
        the payee's name and IBAN before the reference, since the ledger's counterparty is then the
        clearing account; at most the 140 characters an entry keeps."""
        if not self.beneficiary.external:
            return self.reference
        return " ".join(part for part in (self.beneficiary.name, self.beneficiary.iban, self.reference) if part)[:140]

    def moved_to(self, status: PaymentStatus, at: datetime, **changes: Any) -> Payment:
        return replace(self, status=status, updated_at=at, **changes)

    def retried_later(self, at: datetime) -> Payment:
        """After a passing failure in the background: due again later, a little later each time,
        so that one payment that keeps failing never holds up the ones behind it."""
        delay = min(RETRY_MAX, RETRY_BASE * 2 ** min(self.attempts, 16))
        return replace(self, attempts=self.attempts + 1, next_attempt_at=at + delay)


def advanced(current: Payment, status: PaymentStatus, at: datetime, **changes: Any) -> Payment | None:
    """The stored payment moved to `status`, or None when it is final already or in `status`
    already: an identical request got there first, and what it reached stands (each step at the
    account context is one per request id, so every copy met the same hold and the same answer),
    announced once."""
    if current.status in FINAL or current.status is status:
        return None
    return replace(current.moved_to(status, at, **changes), next_attempt_at=None)


@dataclass(frozen=True)
class FraudRules:
    max_amount: Money
    window_seconds: int
    max_payments_per_window: int
    max_amount_per_window: Money


def screen(amount: Money, recent_count: int, recent_total_minor: int, rules: FraudRules) -> str | None:
    """The reason to reject, or None. Recent figures cover the debtor's window, this one excluded."""
    if amount.minor > rules.max_amount.minor:
        return "AMOUNT_LIMIT_EXCEEDED"
    if recent_count + 1 > rules.max_payments_per_window:
        return "VELOCITY_COUNT_EXCEEDED"
    if recent_total_minor + amount.minor > rules.max_amount_per_window.minor:
        return "VELOCITY_AMOUNT_EXCEEDED"
    return None


def screened(payment: Payment, recent_count: int, recent_total_minor: int, rules: FraudRules) -> Payment:
    """The payment as fraud screening lets it in: as it is, or REJECTED with the rule it broke.
    Decided on the debtor's window read in the unit that stores the payment, so two payments
    racing one another are both counted."""
    reason = screen(payment.amount, recent_count, recent_total_minor, rules)
    return payment.moved_to(PaymentStatus.REJECTED, payment.created_at, failure_reason=reason) if reason else payment


def iban_is_valid(iban: str) -> bool:
    """ISO 13616: the country's length and structure, and the mod-97 check digits (the contract
    has already checked the shape)."""
    try:
        IBAN(iban)
    except SchwiftyException:
        return False
    return True


def validate_beneficiary(v: Violations, b: Beneficiary, debtor_account_id: str) -> None:
    if b.external:
        v.check(iban_is_valid(b.iban), "external.iban", "not an IBAN: its length or check digits are wrong for its country")
    else:  # the contract's rules make sure there is one, and name it
        v.check(b.account_id != debtor_account_id, "internal.account_id", "must differ from the debtor account")


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentCompleted:
    payment: Payment


@dataclass(frozen=True)
class PaymentFailed:
    payment: Payment  # failed, or rejected by the fraud rules or the network


@dataclass(frozen=True)
class PaymentQueued:
    payment: Payment  # waits for the network, its funds held


PaymentEvent = PaymentCompleted | PaymentFailed | PaymentQueued


def events_of(p: Payment) -> list[PaymentEvent]:
    """What a payment's new state announces (nothing while it is pending, nor for an operator)."""
    if p.status is PaymentStatus.COMPLETED:
        return [PaymentCompleted(p)]
    if p.status in (PaymentStatus.FAILED, PaymentStatus.REJECTED, PaymentStatus.REFUNDED):
        return [PaymentFailed(p)]
    if p.status is PaymentStatus.QUEUED:
        return [PaymentQueued(p)]
    return []


# --- an operator's actions on a payment stopped for one ---------------------------------------


def _require_needs_operator(p: Payment) -> None:
    if p.status is not PaymentStatus.NEEDS_OPERATOR:
        raise PreconditionFailed(
            "PAYMENT_NOT_NEEDS_OPERATOR",
            f"the payment is {p.status.value}: only one stopped for an operator is retried or refunded",
            {"payment_id": p.payment_id, "status": p.status.value},
        )


def retried_by_operator(p: Payment, at: datetime) -> Payment:
    """A payment stopped for an operator, due again at once: the bank's worker takes it on from
    where it stands (its hold, if found, is kept). Refused once a refund of it is decided."""
    _require_needs_operator(p)
    if p.refund_decided_by:
        raise PreconditionFailed("REFUND_UNDER_WAY", "a refund of the payment is decided", {"payment_id": p.payment_id})
    return replace(
        p,
        status=PaymentStatus.PENDING,
        failure_reason="",
        attempts=0,
        next_attempt_at=None,
        refund_first_approver="",
        updated_at=at,
    )


def refund_approval(p: Payment, approver: str, four_eyes_above: Mapping[str, int]) -> Approval:
    """What `approver`'s refund does to a payment stopped for an operator (decided on the locked
    row): its held funds go back to the debtor, above the four-eyes amount once two admins asked.
    A payment whose hold is not known yet is refused: retry it first, which finds the hold."""
    if p.status is PaymentStatus.REFUNDED or p.refund_decided_by:
        return Approval.NONE
    _require_needs_operator(p)
    if not p.hold_id:
        raise PreconditionFailed(
            "HOLD_UNKNOWN", "the payment's hold is not known: retry the payment, which finds it", {"payment_id": p.payment_id}
        )
    return approval(p.amount.minor, p.amount.currency, four_eyes_above, approver, p.refund_first_approver)


def refund_approved(p: Payment, approver: str, step: Approval, at: datetime) -> Payment:
    """The payment with `approver`'s approval recorded: waiting for a second admin, or decided."""
    if step is Approval.FIRST:
        return replace(p, refund_first_approver=approver, updated_at=at)
    return replace(p, refund_decided_by=approver, updated_at=at)


def refunded(p: Payment, at: datetime) -> Payment:
    """The decided refund done: the hold released, the payment over."""
    return replace(p, status=PaymentStatus.REFUNDED, failure_reason="REFUNDED_BY_OPERATOR", updated_at=at)


def refund_refused(p: Payment, reason: str, at: datetime) -> Payment:
    """The account context refused to release the hold: the payment stays with the operators,
    the refund undecided and the reason shown."""
    return replace(p, failure_reason=f"REFUND_REFUSED_{reason}", refund_first_approver="", refund_decided_by="", updated_at=at)


# --- reconciliation with the payment network ---------------------------------------------------

MAX_DISCREPANCIES = 1000


@dataclass(frozen=True)
class NetworkSettlement:
    """A payment the network accepted: settled (money left the bank) or rejected."""

    payment_id: str
    settled: bool
    amount: Money


@dataclass(frozen=True)
class BookedTransfer:
    """A credit of the clearing account in the ledger: money booked as gone to the network."""

    transfer_id: str
    amount: Money


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    payment_id: str = ""
    transfer_id: str = ""
    detail: str = ""


@dataclass
class Reconciliation:
    network_settled: int = 0
    booked_transfers: int = 0
    matched: int = 0
    in_flight: int = 0
    discrepancies: list[Discrepancy] = field(default_factory=list)
    truncated: bool = False

    def found(self, discrepancy: Discrepancy) -> None:
        if len(self.discrepancies) < MAX_DISCREPANCIES:
            self.discrepancies.append(discrepancy)
        else:
            self.truncated = True


IN_FLIGHT = frozenset({PaymentStatus.PENDING, PaymentStatus.QUEUED})


def reconcile(network: list[NetworkSettlement], payments: list[Payment], booked: list[BookedTransfer]) -> Reconciliation:
    """Every settled network payment booked exactly once for its amount, every booked transfer
    settled; a payment an operator must finish is listed too."""
    result = Reconciliation(network_settled=sum(s.settled for s in network), booked_transfers=len(booked))
    by_id = {p.payment_id: p for p in payments}
    bookings: dict[str, list[BookedTransfer]] = {}
    for b in booked:
        bookings.setdefault(b.transfer_id, []).append(b)
    known = {s.payment_id for s in network}
    for s in network:
        payment = by_id.get(s.payment_id)
        if s.settled:
            _check_settled(result, s, payment, bookings)
        elif payment is not None and payment.status is PaymentStatus.COMPLETED:
            result.found(Discrepancy("BOOKED_NOT_SETTLED", payment.payment_id, payment.transfer_id, "the network rejected it"))
    paid = {p.transfer_id: p for p in payments if p.status is PaymentStatus.COMPLETED and p.transfer_id}
    for transfer_id in bookings:
        payment = paid.get(transfer_id)
        if payment is None:
            result.found(
                Discrepancy("BOOKED_WITHOUT_PAYMENT", transfer_id=transfer_id, detail="a clearing credit no payment made")
            )
        elif payment.payment_id not in known:
            result.found(Discrepancy("BOOKED_NOT_SETTLED", payment.payment_id, transfer_id, "the network has no record of it"))
    for p in payments:
        if p.status is PaymentStatus.NEEDS_OPERATOR:
            result.found(Discrepancy("NEEDS_OPERATOR", p.payment_id, p.transfer_id, p.failure_reason))
    return result


def _check_settled(
    result: Reconciliation, s: NetworkSettlement, payment: Payment | None, bookings: dict[str, list[BookedTransfer]]
) -> None:
    if payment is None:
        result.found(Discrepancy("SETTLED_UNKNOWN_PAYMENT", s.payment_id, detail=f"the network settled {s.amount}"))
    elif payment.status in IN_FLIGHT:
        result.in_flight += 1
    elif payment.status is not PaymentStatus.COMPLETED:
        result.found(
            Discrepancy("SETTLED_NOT_BOOKED", payment.payment_id, detail=f"settled, but the payment is {payment.status.value}")
        )
    elif not bookings.get(payment.transfer_id):
        result.found(Discrepancy("TRANSFER_MISSING", payment.payment_id, payment.transfer_id, "no such clearing credit"))
    elif len(bookings[payment.transfer_id]) > 1:
        result.found(Discrepancy("BOOKED_TWICE", payment.payment_id, payment.transfer_id, "booked more than once"))
    elif bookings[payment.transfer_id][0].amount != s.amount or payment.amount != s.amount:
        result.found(
            Discrepancy(
                "AMOUNT_MISMATCH",
                payment.payment_id,
                payment.transfer_id,
                f"network {s.amount}, ledger {bookings[payment.transfer_id][0].amount}",
            )
        )
    else:
        result.matched += 1
