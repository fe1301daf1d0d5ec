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
IN_FLIGHT = frozenset({PaymentStatus.PENDING, PaymentStatus.QUEUED})  # the bank is still completing it
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
class Remittance:
    """What the ledger keeps beside a payment's entries (the account context's PlaceHold fields):
    the payee outside the bank, by name and IBAN, and the payment's reference."""

    payee_name: str = ""
    payee_iban: str = ""
    reference: str = ""


NO_REMITTANCE = Remittance()


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
    operator_retries: int = 0  # times an operator handed it back to the bank (RetryPayment)

    @property
    def statement_text(self) -> str:
        """What the ledger's entries of the payment say (the hold's description, both sides), never
        blank: to another bank, "Payment to" the payee by name (else IBAN); inside the bank, from
        which account to which, true on the payer's side and the payee's alike. The reference and
        the payee's IBAN travel as fields of their own (`remittance`). At most 140 characters."""
        b = self.beneficiary
        if b.external:
            return f"Payment to {b.name or b.iban}"[:140]
        return f"Payment from {self.debtor_account_id} to {b.account_id}"[:140]

    @property
    def remittance(self) -> Remittance:
        """The payee outside the bank (an external payment's; an internal one's is the ledger's
        own account) and the reference, for the ledger to keep with the entries."""
        b = self.beneficiary
        return Remittance(b.name, b.iban, self.reference) if b.external else Remittance(reference=self.reference)

    def step_key(self, step: str) -> str:
        """The request id of a step at the account context ("capture", "release"): one per
        operator's retry, since the account context keeps each request id's first answer (a
        refusal too) and a retry is asked because the state behind it changed. The hold itself
        is resolved once whatever the key: a new key never moves its money twice."""
        return f"{self.payment_id}-{step}" + (f"-r{self.operator_retries}" if self.operator_retries else "")

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
        operator_retries=p.operator_retries + 1,
        updated_at=at,
    )


SETTLED = "SETTLED_"  # the prefix of a failure after the network settled: the money has left


def refund_approval(p: Payment, approver: str, four_eyes_above: Mapping[str, int]) -> Approval:
    """What `approver`'s refund does to a payment stopped for an operator (decided on the locked
    row): its held funds go back to the debtor, above the four-eyes amount once two admins asked.
    A payment whose hold is not known yet is refused: retry it first, which finds the hold."""
    _require_needs_operator(p)
    if p.refund_decided_by:
        raise PreconditionFailed("REFUND_UNDER_WAY", "a refund of the payment is decided", {"payment_id": p.payment_id})
    if p.failure_reason.startswith(SETTLED):
        raise PreconditionFailed(
            "PAYMENT_SETTLED",
            "the network paid the beneficiary: the held funds are what the bank paid out; retry the capture instead",
            {"payment_id": p.payment_id, "failure_reason": p.failure_reason},
        )
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


# --- batches (bulk payments) ------------------------------------------------------------------

MAX_BATCH_LINES = 10_000
MAX_LINE_VIOLATIONS = 100  # a file with more bad lines than this is told about its first ones


class BatchStatus(enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    PARTIALLY_COMPLETED = "PARTIALLY_COMPLETED"
    REFUSED = "REFUSED"


@dataclass(frozen=True)
class BatchLine:
    """One line of a batch as the customer sent it (pain.001 CdtTrfTxInf), numbered from 1."""

    number: int
    end_to_end_id: str
    beneficiary: Beneficiary
    amount: Money
    reference: str


@dataclass(frozen=True)
class BatchHeader:
    """What the sender says of the batch as a whole, checked against its lines."""

    number_of_transactions: int
    control_sum: Money | None  # None: not a decimal in the batch's currency (a violation already)
    message_id: str


@dataclass(frozen=True)
class Batch:
    """A batch accepted whole; its lines are payments (Payment rows that name it). Its status is
    counted from them, so that a batch has no state of its own to leave behind: REFUSED (its
    funds were refused whole, `failure_reason`) is the only one it keeps."""

    batch_id: str
    debtor_account_id: str
    message_id: str
    line_count: int
    total: Money
    created_at: datetime
    failure_reason: str = ""
    counts: dict[PaymentStatus, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        return self.counts.get(PaymentStatus.COMPLETED, 0)

    @property
    def in_flight(self) -> int:
        return sum(self.counts.get(s, 0) for s in IN_FLIGHT)

    @property
    def failed(self) -> int:
        return self.line_count - self.completed - self.in_flight

    @property
    def status(self) -> BatchStatus:
        if self.failure_reason:
            return BatchStatus.REFUSED
        if self.in_flight:
            return BatchStatus.IN_PROGRESS
        return BatchStatus.COMPLETED if self.completed == self.line_count else BatchStatus.PARTIALLY_COMPLETED


def validate_batch(v: Violations, debtor_account_id: str, lines: list[BatchLine], header: BatchHeader, prefix: str) -> None:
    """The batch whole, before anything is stored: every line as a payment's (IBAN check digits and
    length per country, not the debtor itself), one currency, end-to-end ids unique, and the
    header's count and control sum equal to the lines'. `prefix`: the field path of the lines."""
    bad = 0
    seen: dict[str, int] = {}
    currencies = {line.amount.currency for line in lines}
    for line in lines:
        if bad >= MAX_LINE_VIOLATIONS:
            break
        before = len(v)
        path = f"{prefix}[{line.number - 1}]"
        if line.beneficiary.external:
            v.check(
                iban_is_valid(line.beneficiary.iban),
                f"{path}.external.iban",
                "not an IBAN: its length or check digits are wrong for its country",
            )
        else:
            v.check(
                line.beneficiary.account_id != debtor_account_id,
                f"{path}.internal.account_id",
                "must differ from the debtor account",
            )
        first = seen.setdefault(line.end_to_end_id, line.number)
        v.check(
            first == line.number, f"{path}.end_to_end_id", f"the same as line {first}'s: each line's id is unique in the batch"
        )
        bad += len(v) > before
    v.check(
        len(currencies) <= 1, f"{prefix}.amount.currency_code", f"one currency per batch, not {', '.join(sorted(currencies))}"
    )
    v.check(
        header.number_of_transactions == len(lines),
        "number_of_transactions",
        f"says {header.number_of_transactions}, but the batch has {len(lines)} lines",
    )
    if header.control_sum is not None and len(currencies) == 1:
        total = sum(line.amount.minor for line in lines)
        v.check(
            header.control_sum.minor == total,
            "control_sum",
            f"says {header.control_sum.amount}, but the lines add up to {Money(header.control_sum.currency, total).amount}",
        )


def batch_total(lines: list[BatchLine]) -> Money:
    return Money(lines[0].amount.currency, sum(line.amount.minor for line in lines))
