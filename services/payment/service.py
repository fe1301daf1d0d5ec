"""Use cases of the payment context.

Authority comes first. Before anything is written, the account context says (side-effect free)
whether the caller may debit the debtor account; a caller who may not leaves no trace. The
payment is then stored with the authority that was verified, screened for fraud, and the debtor's
funds are reserved by a hold placed under the caller's authority (relayed: the account context
judges the user, and records this context as the hold's owner, so that only it can capture or
release it). An internal payment's hold is captured to the beneficiary as it is placed (one unit
of work in the account context); external ones go to
VelocityPay through a circuit breaker, are captured to the clearing account when settled,
released when refused, and kept QUEUED (funds still held) while the network cannot be reached.

Background work never gains authority. The store-and-forward worker acts as this context alone:
it completes or undoes what a request started (captures or releases the payment's own hold), and
when a request lost PlaceHold's answer it only looks the hold up (LookupHold closes the request
id when no hold was placed): it never places one. Every step is idempotent (request ids derived
from the payment id); a step refused for good stops the payment in a state an operator sees
instead of retrying it forever, and a passing failure pushes that one payment back, not the queue.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from common.callee import SILENCE, CalleeRefused, callee_refusals, denial
from common.clock import Clock
from common.config import Settings
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.errors import DeadlineExceeded, NotFound, PermissionDenied, Unavailable
from common.filtering import Filter
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import PageRequest
from common.security.context import ADMIN, as_itself, current_caller
from common.security.policy import denied, require_role, unknown
from services.payment.domain import (
    FINAL,
    SETTLED,
    Beneficiary,
    FraudRules,
    Payment,
    PaymentStatus,
    advanced,
    events_of,
    refund_refused,
    refunded,
    screened,
)
from services.payment.ports import Accounts, FoundHold, NetworkRefused, NetworkUnavailable, PaymentNetwork
from services.payment.reconciliation import BookedTransfer, Reconciliation, reconcile
from services.payment.repository import PaymentUnit, PaymentUnits

FRAUD_FILE = Path(__file__).parent / "fraud.toml"


@og_component()
class FraudScreening(BaseComponent):
    """Rules from configuration (`fraud_rules_path`, else the shipped fraud.toml)."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.fraud_rules_path or FRAUD_FILE
        self._config: dict[str, Any] = {}  # fraud.toml

    async def initialize(self) -> None:
        self._config = tomllib.loads(self._path.read_text(encoding="utf-8"))

    def rules(self, currency: str) -> FraudRules:
        c = self._config
        return FraudRules(
            max_amount=Money.parse(currency, str(c["max_amount"])),
            window_seconds=int(c["window_seconds"]),
            max_payments_per_window=int(c["max_payments_per_window"]),
            max_amount_per_window=Money.parse(currency, str(c["max_amount_per_window"])),
        )


R = TypeVar("R")


@contextmanager
def _account_step(p: Payment) -> Iterator[None]:
    """A step of `p` at the account context: a refusal is CalleeRefused (`common.callee`); no
    answer (down, deadline, cancelled on its side) carries the payment's id: the payment is kept
    and the worker completes it."""
    try:
        with callee_refusals():
            yield
    except SILENCE as silent:
        kept = {**silent.metadata, "payment_id": p.payment_id}
        if isinstance(silent, DeadlineExceeded):
            raise DeadlineExceeded(silent.reason, silent.message, kept) from silent
        raise Unavailable(
            "ACCOUNTS_UNAVAILABLE",
            "the account context did not answer; the payment is kept and completes by itself (GetPayment shows it)",
            kept,
        ) from silent


@og_component()
class PaymentProcessor(BaseComponent):
    """Takes a payment from its stored state to the next one; safe to run again on any state."""

    def __init__(self, units: PaymentUnits, accounts: Accounts, network: PaymentNetwork, clock: Clock) -> None:
        self._units = units
        self._accounts = accounts
        self._network = network
        self._clock = clock

    async def _move(self, p: Payment, status: PaymentStatus, **changes: str) -> Payment:
        """Moves the payment as it is stored now, decided on the row locked in the unit that saves it:
        identical requests drive one payment, and the first to finish it answers for all (their
        steps met the same hold, by request id); a copy that comes second waits for the lock and
        answers the payment as the first left it."""
        now = self._clock.now()

        async def save(uow: PaymentUnit) -> Payment:
            current = stored(await uow.payments.locked(p.payment_id), p.payment_id)
            moved = advanced(current, status, now, **changes)
            if moved is None:
                if status is PaymentStatus.NEEDS_OPERATOR and current.status is not status:
                    self.logger.warning(
                        "payment %s: %s wanted an operator, but an identical request had moved it to %s",
                        p.payment_id,
                        changes.get("failure_reason", ""),
                        current.status.value,
                    )
                return current
            await uow.payments.move(moved, current.status)
            await uow.publish(events_of(moved))
            return moved

        return await self._units.write(save)

    async def process(self, p: Payment, *, live: bool) -> Payment:
        """`live`: on the request path, with the caller's authority, which may reserve the funds;
        otherwise the worker, which may only find the hold the request placed."""
        if p.status is PaymentStatus.NEEDS_OPERATOR and p.refund_decided_by:
            return await self._refund(p)
        if p.status in FINAL:
            return p
        if not p.hold_id:
            p = await (self._hold(p) if live else self._find_hold(p))
            if p.status in FINAL:
                return p
        if not p.beneficiary.external:
            return await self._capture(p)
        try:
            answer = await self._network.submit(p)
        except NetworkRefused as refused:
            return await self._release(p, f"NETWORK_REFUSED_{refused.code}")
        except NetworkUnavailable:  # queued, or as an identical request that reached the network left it
            return await self._move(p, PaymentStatus.QUEUED, hold_id=p.hold_id)
        if answer.settled:
            return await self._capture(p, settled=True)
        return await self._release(p, answer.reject_reason or "NETWORK_REJECTED")

    @staticmethod
    def hold_request_id(p: Payment) -> str:
        return f"{p.payment_id}-hold"

    async def _hold(self, p: Payment) -> Payment:
        """Reserves the funds with the caller's authority (the account context judges it); an
        internal payment's are posted in the same step (nothing else decides on it)."""
        external = p.beneficiary.external
        try:
            with _account_step(p):
                creditor = await self._accounts.clearing_account(p.amount.currency) if external else p.beneficiary.account_id
                hold = await self._accounts.place_hold(
                    self.hold_request_id(p),
                    p.debtor_account_id,
                    creditor,
                    p.amount,
                    p.statement_text,
                    capture=not external,
                    remittance=p.remittance,
                )
        except CalleeRefused as refused:
            return await self._hold_refused(p, refused)
        if hold.transfer_id:
            return await self._completed(p, hold)
        # Not stored yet: if this process dies now, the worker finds the hold by its request id.
        return replace(p, hold_id=hold.hold_id)

    async def _hold_refused(self, p: Payment, refused: CalleeRefused) -> Payment:
        """Any refusal but one of authority is the hold request's answer, kept by the account
        context for its id. One of authority is final only once the request id is closed: the
        account context judges the caller before it replays a request id, so an identical request
        that went first may hold the funds although this copy was refused (its token revoked
        meanwhile, a right withdrawn): looked up as this context, that hold is the payment's."""
        if not refused.of_authority:
            reason = "ACCOUNT_NOT_FOUND" if isinstance(refused.error, NotFound) else refused.reason
            return await self._move(p, PaymentStatus.FAILED, failure_reason=reason)
        reason = "ACCESS_DENIED" if isinstance(refused.error, PermissionDenied) else refused.reason
        with as_itself():
            found = await self._find_hold(p, not_placed=reason)
        if found.status is PaymentStatus.FAILED and found.failure_reason == "ACCESS_DENIED" and reason == "ACCESS_DENIED":
            raise denial(
                refused.error, "the caller may not spend from the debtor account", {"payment_id": p.payment_id}
            ) from refused
        return found

    async def _find_hold(self, p: Payment, *, not_placed: str = "HOLD_NOT_PLACED") -> Payment:
        """The hold the request placed, if it placed one; never a new one (LookupHold closes the
        request id when there is none, so the answer is final: the payment fails `not_placed`)."""
        try:
            with _account_step(p):
                found = await self._accounts.lookup_hold(self.hold_request_id(p))
        except CalleeRefused as refused:
            if not isinstance(refused.error, NotFound):
                return await self._move(p, PaymentStatus.NEEDS_OPERATOR, failure_reason=f"HOLD_LOOKUP_REFUSED_{refused.reason}")
            return await self._move(p, PaymentStatus.FAILED, failure_reason=not_placed)
        if found.released:
            return await self._move(
                p, PaymentStatus.FAILED, failure_reason=p.failure_reason or "HOLD_RELEASED", hold_id=found.hold_id
            )
        if found.transfer_id:
            return await self._completed(p, found)
        return replace(p, hold_id=found.hold_id)

    async def _completed(self, p: Payment, captured: FoundHold) -> Payment:
        return await self._move(
            p, PaymentStatus.COMPLETED, transfer_id=captured.transfer_id, hold_id=captured.hold_id, failure_reason=""
        )

    async def _resolving(self, p: Payment, resolve: Callable[[], Awaitable[R]]) -> R:
        """Resolves the payment's own hold with the payer's authority (the audit trail names
        them), or as this context when the payer's is gone since the hold was placed (a token
        revoked, a right withdrawn): the payer has paid, and the hold is this context's."""
        try:
            with _account_step(p):
                return await resolve()
        except CalleeRefused as refused:
            if not refused.of_authority:
                raise
        with _account_step(p), as_itself():
            return await resolve()

    async def _capture(self, p: Payment, *, settled: bool = False) -> Payment:
        """Posts the held funds. Refused for good: an internal payment is undone (release); an
        external one the network settled is left to an operator, funds still held."""
        try:
            capture = functools.partial(self._accounts.capture_hold, p.step_key("capture"), p.hold_id)
            transfer_id = await self._resolving(p, capture)
        except CalleeRefused as refused:
            if settled:
                return await self._move(
                    p,
                    PaymentStatus.NEEDS_OPERATOR,
                    failure_reason=f"{SETTLED}CAPTURE_REFUSED_{refused.reason}",
                    hold_id=p.hold_id,
                )
            return await self._release(p, f"CAPTURE_REFUSED_{refused.reason}")
        return await self._completed(p, FoundHold(p.hold_id, released=False, transfer_id=transfer_id))

    async def _refund(self, p: Payment) -> Payment:
        """Releases the hold of a payment whose refund an operator decided (its own request id:
        the account context keeps the answer of the payment's earlier release, if it tried one)."""
        try:
            await self._resolving(p, functools.partial(self._accounts.release_hold, f"{p.payment_id}-refund", p.hold_id))
        except CalleeRefused as refused:
            reason = refused.reason
            return await self._settle_refund(p, lambda current, at: refund_refused(current, reason, at))
        return await self._settle_refund(p, refunded)

    async def _settle_refund(self, p: Payment, outcome: Callable[[Payment, datetime], Payment]) -> Payment:
        """The refund's outcome saved on the payment as it stands, if its refund is still decided
        (an identical request or the worker may have settled it first)."""
        now = self._clock.now()

        async def save(uow: PaymentUnit) -> Payment:
            current = stored(await uow.payments.locked(p.payment_id), p.payment_id)
            if current.status is not PaymentStatus.NEEDS_OPERATOR or not current.refund_decided_by:
                return current
            settled = outcome(current, now)
            await uow.payments.move(settled, current.status)
            await uow.publish(events_of(settled))
            return settled

        return await self._units.write(save)

    async def _release(self, p: Payment, reason: str) -> Payment:
        try:
            await self._resolving(p, functools.partial(self._accounts.release_hold, p.step_key("release"), p.hold_id))
        except CalleeRefused as refused:
            return await self._move(
                p, PaymentStatus.NEEDS_OPERATOR, failure_reason=f"{reason}; RELEASE_REFUSED_{refused.reason}", hold_id=p.hold_id
            )
        return await self._move(p, PaymentStatus.FAILED, failure_reason=reason, hold_id=p.hold_id)


@og_component()
class PaymentUseCases(BaseComponent):
    def __init__(
        self,
        units: PaymentUnits,
        processor: PaymentProcessor,
        fraud: FraudScreening,
        accounts: Accounts,
        network: PaymentNetwork,
        clock: Clock,
    ) -> None:
        self._units = units
        self._processor = processor
        self._fraud = fraud
        self._accounts = accounts
        self._network = network
        self._clock = clock

    async def create(self, debtor: str, beneficiary: Beneficiary, amount: Money, reference: str, key: IdempotencyKey) -> Payment:
        await self._require_debtor(debtor, debit=True, action="spend from this account")
        if not beneficiary.external:
            await self._accounts.require_payee(beneficiary.account_id)
        now = self._clock.now()
        payment = Payment(
            new_id("pay"),
            debtor,
            beneficiary,
            amount,
            reference,
            PaymentStatus.PENDING,
            now,
            now,
            authorized_by=current_caller().chain,
        )
        created = await self._units.write(self._admission(payment, key, self._fraud.rules(amount.currency)))
        if created.status in FINAL:
            return created
        # A replay of a payment still on its way drives it on, with the same authority as the
        # first request (whose caller may have given up before its hold was placed): left to the
        # worker, which may only look for a hold, it would fail for want of one.
        return await self._processor.process(created, live=True)

    @staticmethod
    def _admission(payment: Payment, key: IdempotencyKey, rules: FraudRules) -> Callable[[PaymentUnit], Awaitable[Payment]]:
        """The unit that lets a payment in: the key claimed, the debtor's window screened and the
        payment stored, decided together (a replay answers the payment its key made)."""

        async def admit(uow: PaymentUnit) -> Payment:
            replayed = await uow.claim(key, payment.payment_id)
            if replayed is not None:
                return stored(await uow.payments.get(replayed), replayed)
            since = payment.created_at - timedelta(seconds=rules.window_seconds)
            window = await uow.payments.window(payment.debtor_account_id, payment.amount.currency, since)
            decided = screened(payment, window.count, window.total_minor, rules)
            await uow.payments.add(decided)
            await uow.publish(events_of(decided))
            return decided

        return admit

    async def _require_debtor(self, account_id: str, *, debit: bool, action: str) -> None:
        """The account context decides, for the caller (a user, or an admin), and changes nothing."""
        try:
            await (self._accounts.require_debit(account_id) if debit else self._accounts.require_read(account_id))
        except PermissionDenied as refused:
            if refused.reason == "INTERNAL_ACCOUNT":  # not the caller's rights: the account's kind
                raise PermissionDenied(refused.reason, refused.message, refused.metadata) from refused
            raise denied(action) from refused

    async def get(self, payment_id: str) -> Payment:
        payment = await self._units.read(lambda uow: uow.payments.get(payment_id))
        if payment is None:
            raise unknown("payment", payment_id, "read this payment")
        await self._require_debtor(payment.debtor_account_id, debit=False, action="read this payment")
        return payment

    async def payments_of(self, debtor: str, matching: Filter, request: PageRequest) -> tuple[list[Payment], str]:
        """The payments of a debtor account its readers may see; every account's (`debtor`
        empty) for admins, the operators' bank-wide list."""
        if debtor:
            await self._require_debtor(debtor, debit=False, action="read this account's payments")
        else:
            require_role(ADMIN, action="list every account's payments")
        page = await self._units.read(lambda uow: uow.payments.page(debtor, matching, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)

    async def reconcile(self, currency: str) -> Reconciliation:
        """What the network settled against what the ledger booked (admins; reads only)."""
        require_role(ADMIN, action="reconcile with the payment network")
        network = [s for s in await self._network.settlements() if not currency or s.amount.currency == currency]
        payments = await self._units.read(lambda uow: uow.payments.external(currency))
        currencies = (
            [currency] if currency else sorted({p.amount.currency for p in payments} | {s.amount.currency for s in network})
        )
        booked = [credit for c in currencies for credit in await self._clearing_credits(c)]
        return reconcile(network, payments, booked)

    async def _clearing_credits(self, currency: str) -> list[BookedTransfer]:
        """What the ledger booked into the clearing account: the money that left for the network."""
        return await self._accounts.credits_of(await self._accounts.clearing_account(currency))
