"""Use cases of the payment context.

Authority comes first. Before anything is written, the account context says (side-effect free)
whether the caller may debit the debtor account; a caller who may not leaves no trace. The
payment is then stored with the authority that was verified, screened for fraud, and the debtor's
funds are reserved by a hold placed under the caller's authority (relayed: the account context
judges the user, and records this context as the hold's owner, so that only it can capture or
release it). Internal payments capture the hold to the beneficiary; external ones go to
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

import asyncio
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.errors import AppError, NotFound, PermissionDenied
from common.events.outbox import OutboxRelay
from common.grpc.convert import timestamp
from common.grpc.status import no_answer, reason_of
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import PageTokens
from common.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
from common.resilience.shared import SharedBreakerState
from common.security.context import ADMIN, current_caller
from common.security.policy import denied, require_role, unknown
from common.security.secrets import shared_key
from common.validation import Violations, check_id, check_request_id, check_text
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.payment.v1 import events_pb2
from ogpgy.type.v1 import money_pb2
from services.payment.domain import (
    FINAL,
    Beneficiary,
    BookedTransfer,
    FraudRules,
    NetworkSettlement,
    Payment,
    PaymentStatus,
    Reconciliation,
    reconcile,
    validate_beneficiary,
)
from services.payment.repository import PaymentRepository
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1.network_pb2_grpc import PaymentNetworkServiceStub

FRAUD_FILE = Path(__file__).parent / "fraud.toml"
ACCOUNT_CALL_TIMEOUT = 5.0
DEFINITE = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


def clearing_account(currency: str) -> str:
    """The account context's clearing account: where money leaves for other banks."""
    return f"acc_CLEARING_{currency}"


def _money_pb(m: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=m.currency, amount=m.amount)


def events_for(p: Payment) -> list[Message]:
    """The event a payment's state announces (none while it is pending, nor for an operator)."""
    amount, at = _money_pb(p.amount), timestamp(p.updated_at)
    if p.status is PaymentStatus.COMPLETED:
        return [
            events_pb2.PaymentCompleted(
                payment_id=p.payment_id,
                debtor_account_id=p.debtor_account_id,
                amount=amount,
                transfer_id=p.transfer_id,
                complete_time=at,
            )
        ]
    if p.status in (PaymentStatus.FAILED, PaymentStatus.REJECTED):
        return [
            events_pb2.PaymentFailed(
                payment_id=p.payment_id,
                debtor_account_id=p.debtor_account_id,
                amount=amount,
                reason=p.failure_reason,
                fail_time=at,
            )
        ]
    if p.status is PaymentStatus.QUEUED:
        return [
            events_pb2.PaymentQueued(payment_id=p.payment_id, debtor_account_id=p.debtor_account_id, amount=amount, queue_time=at)
        ]
    return []


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


MEMBER_KEY_HEADER = "x-velocitypay-member-key"  # the network's contract (velocitypay/v1/network.proto)


@og_component()
class VelocityPayGateway(BaseComponent):
    """The network behind a circuit breaker, whose state all instances share through Redis. The
    network knows the bank by its member key, which every call carries."""

    def __init__(self, network: PaymentNetworkServiceStub, settings: Settings) -> None:
        self._network = network
        self._member_key_path = settings.member_key_path()
        self._member: tuple[tuple[str, str], ...] = ()
        self._timeout = settings.network_timeout_seconds
        self.breaker = CircuitBreaker(
            "velocitypay", BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds)
        )
        self._shared = SharedBreakerState(self.breaker, settings.redis_url) if settings.redis_url else None

    async def initialize(self) -> None:
        self._member = ((MEMBER_KEY_HEADER, shared_key(self._member_key_path)),)
        if self._shared is not None:
            await self._shared.start()

    async def shutdown(self) -> None:
        if self._shared is not None:
            await self._shared.stop()

    async def submit(self, p: Payment) -> vpb.SubmitPaymentResponse:
        request = vpb.SubmitPaymentRequest(
            payment_id=p.payment_id,
            beneficiary_iban=p.beneficiary.iban,
            beneficiary_name=p.beneficiary.name,
            currency_code=p.amount.currency,
            amount=p.amount.amount,
            reference=p.reference,
        )
        return await self.breaker.call(self._network.SubmitPayment, request, timeout=self._timeout, metadata=self._member)

    async def settlements(self) -> list[vpb.Settlement]:
        """The network's whole settlement report (page by page; not through the breaker: an
        operator's read should say that the network is down, not that our circuit is open)."""
        found: list[vpb.Settlement] = []
        token = ""
        while True:
            page = await self._network.ListSettlements(
                vpb.ListSettlementsRequest(page_size=1000, page_token=token), timeout=self._timeout * 5, metadata=self._member
            )
            found.extend(page.settlements)
            token = page.next_page_token
            if not token:
                return found


class _Refused(Exception):
    """The account context refused a step for good (not a passing failure)."""

    def __init__(self, err: grpc.aio.AioRpcError) -> None:
        super().__init__(reason_of(err) or err.code().name)
        self.code = err.code()
        self.reason = str(self)


@contextmanager
def _account_call(p: Payment) -> Iterator[None]:
    """A call to the account context for `p`: a definite refusal is _Refused; no answer (down,
    deadline, cancelled on its side) is UNAVAILABLE with the payment's id: the payment is kept
    and the worker completes it."""
    try:
        yield
    except grpc.aio.AioRpcError as err:
        if err.code() in DEFINITE:
            raise _Refused(err) from err
        raise no_answer(
            err,
            "ACCOUNTS_UNAVAILABLE",
            "the account context did not answer; the payment is kept and completes by itself (GetPayment shows it)",
            {"payment_id": p.payment_id},
        ) from err


@og_component()
class PaymentProcessor(BaseComponent):
    """Takes a payment from its stored state to the next one; safe to run again on any state."""

    def __init__(
        self,
        repository: PaymentRepository,
        accounts: AccountServiceStub,
        gateway: VelocityPayGateway,
        clock: Clock,
        relay: OutboxRelay,
    ) -> None:
        self._repository = repository
        self._accounts = accounts
        self._gateway = gateway
        self._clock = clock
        self._relay = relay

    async def _move(self, p: Payment, status: PaymentStatus, **changes: str) -> Payment:
        moved = replace(p.moved_to(status, self._clock.now(), **changes), next_attempt_at=None)
        stored = await self._repository.advance(moved, p.status, events_for(moved))
        self._relay.nudge()
        return stored

    async def process(self, p: Payment, *, live: bool) -> Payment:
        """`live`: on the request path, with the caller's authority, which may reserve the funds;
        otherwise the worker, which may only find the hold the request placed."""
        if p.status in FINAL:
            return p
        if not p.hold_id:
            p = await (self._hold(p) if live else self._find_hold(p))
            if p.status in FINAL:
                return p
        if not p.beneficiary.external:
            return await self._capture(p)
        try:
            answer = await self._gateway.submit(p)
        except (CircuitOpenError, grpc.aio.AioRpcError) as err:
            if isinstance(err, grpc.aio.AioRpcError) and not self._gateway.breaker.counts_as_failure(err):
                return await self._release(p, f"NETWORK_REFUSED_{err.code().name}")
            return p if p.status is PaymentStatus.QUEUED else await self._move(p, PaymentStatus.QUEUED, hold_id=p.hold_id)
        if answer.status == vpb.NETWORK_PAYMENT_STATUS_SETTLED:
            return await self._capture(p, settled=True)
        return await self._release(p, answer.reject_reason or "NETWORK_REJECTED")

    def _hold_request_id(self, p: Payment) -> str:
        return f"{p.payment_id}-hold"

    async def _hold(self, p: Payment) -> Payment:
        """Reserves the funds with the caller's authority (the account context judges it)."""
        credit = (p.beneficiary.iban and clearing_account(p.amount.currency)) or p.beneficiary.account_id
        request = apb.PlaceHoldRequest(
            request_id=self._hold_request_id(p),
            debit_account_id=p.debtor_account_id,
            credit_account_id=credit,
            amount=_money_pb(p.amount),
            description=p.reference,
        )
        try:
            with _account_call(p):
                hold = await self._accounts.PlaceHold(request, timeout=ACCOUNT_CALL_TIMEOUT)
        except _Refused as refused:
            if refused.code == grpc.StatusCode.PERMISSION_DENIED:  # revoked since the check: nothing reserved
                await self._move(p, PaymentStatus.FAILED, failure_reason="ACCESS_DENIED")
                raise PermissionDenied(
                    "ACCESS_DENIED", "the caller may not spend from the debtor account", {"payment_id": p.payment_id}
                ) from refused
            reason = "ACCOUNT_NOT_FOUND" if refused.code == grpc.StatusCode.NOT_FOUND else refused.reason
            return await self._move(p, PaymentStatus.FAILED, failure_reason=reason)
        # Not stored yet: if this process dies now, the worker finds the hold by its request id.
        return replace(p, hold_id=hold.hold.hold_id)

    async def _find_hold(self, p: Payment) -> Payment:
        """The hold the request placed, if it placed one; never a new one (LookupHold closes the
        request id when there is none, so the answer is final)."""
        try:
            with _account_call(p):
                found = await self._accounts.LookupHold(
                    apb.LookupHoldRequest(request_id=self._hold_request_id(p)), timeout=ACCOUNT_CALL_TIMEOUT
                )
        except _Refused as refused:
            if refused.code != grpc.StatusCode.NOT_FOUND:
                return await self._move(p, PaymentStatus.NEEDS_OPERATOR, failure_reason=f"HOLD_LOOKUP_REFUSED_{refused.reason}")
            return await self._move(p, PaymentStatus.FAILED, failure_reason="HOLD_NOT_PLACED")
        hold = found.hold
        if hold.status == apb.HOLD_STATUS_RELEASED:
            return await self._move(
                p, PaymentStatus.FAILED, failure_reason=p.failure_reason or "HOLD_RELEASED", hold_id=hold.hold_id
            )
        return replace(p, hold_id=hold.hold_id)

    async def _capture(self, p: Payment, *, settled: bool = False) -> Payment:
        """Posts the held funds. Refused for good: an internal payment is undone (release); an
        external one the network settled is left to an operator, funds still held."""
        request = apb.CaptureHoldRequest(request_id=f"{p.payment_id}-capture", hold_id=p.hold_id)
        try:
            with _account_call(p):
                captured = await self._accounts.CaptureHold(request, timeout=ACCOUNT_CALL_TIMEOUT)
        except _Refused as refused:
            if settled:
                return await self._move(
                    p, PaymentStatus.NEEDS_OPERATOR, failure_reason=f"SETTLED_CAPTURE_REFUSED_{refused.reason}", hold_id=p.hold_id
                )
            return await self._release(p, f"CAPTURE_REFUSED_{refused.reason}")
        return await self._move(
            p, PaymentStatus.COMPLETED, transfer_id=captured.transfer.transfer_id, hold_id=p.hold_id, failure_reason=""
        )

    async def _release(self, p: Payment, reason: str) -> Payment:
        request = apb.ReleaseHoldRequest(request_id=f"{p.payment_id}-release", hold_id=p.hold_id)
        try:
            with _account_call(p):
                await self._accounts.ReleaseHold(request, timeout=ACCOUNT_CALL_TIMEOUT)
        except _Refused as refused:
            return await self._move(
                p, PaymentStatus.NEEDS_OPERATOR, failure_reason=f"{reason}; RELEASE_REFUSED_{refused.reason}", hold_id=p.hold_id
            )
        return await self._move(p, PaymentStatus.FAILED, failure_reason=reason, hold_id=p.hold_id)


@og_component()
class PaymentApplicationService(BaseComponent):
    def __init__(
        self,
        repository: PaymentRepository,
        processor: PaymentProcessor,
        fraud: FraudScreening,
        accounts: AccountServiceStub,
        gateway: VelocityPayGateway,
        clock: Clock,
        relay: OutboxRelay,
        pages: PageTokens,
    ) -> None:
        self._repository = repository
        self._processor = processor
        self._fraud = fraud
        self._accounts = accounts
        self._gateway = gateway
        self._clock = clock
        self._relay = relay
        self._pages = pages

    async def create(
        self, debtor: str, beneficiary: Beneficiary, amount: Money | None, reference: str, v: Violations, key: IdempotencyKey
    ) -> Payment:
        check_request_id(v, key.request_id)
        check_id(v, debtor, "debtor_account_id", "acc")
        validate_beneficiary(v, beneficiary, debtor)
        check_text(v, reference, "reference", max_len=140, required=False)
        v.raise_if_any()
        assert amount is not None
        await self._require_debtor_access(debtor, debit=True, action="spend from this account")
        if not beneficiary.external:
            await self._require_payee(beneficiary.account_id)
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
        created = await self._repository.create(payment, key, self._fraud.rules(amount.currency), events_for)
        self._relay.nudge()
        if created.replayed or created.payment.status in FINAL:
            return created.payment
        return await self._processor.process(created.payment, live=True)

    async def _require_debtor_access(self, account_id: str, *, debit: bool, action: str) -> None:
        """The account context decides, for the caller (a user, or an admin), and changes nothing."""
        access = apb.ACCOUNT_ACCESS_DEBIT if debit else apb.ACCOUNT_ACCESS_READ
        try:
            await self._accounts.CheckAccountAccess(
                apb.CheckAccountAccessRequest(account_id=account_id, access=access), timeout=ACCOUNT_CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise denied(action) from err
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("account", account_id) from err
            raise no_answer(err, "ACCOUNTS_UNAVAILABLE", "cannot check access to the account") from err

    async def _require_payee(self, account_id: str) -> None:
        """An internal beneficiary that does not exist is NOT_FOUND before any row is written (a
        payer may know whether the account paid into exists, as with a transfer)."""
        try:
            await self._accounts.CheckAccountAccess(
                apb.CheckAccountAccessRequest(account_id=account_id, access=apb.ACCOUNT_ACCESS_CREDIT),
                timeout=ACCOUNT_CALL_TIMEOUT,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("account", account_id) from err
            raise no_answer(err, "ACCOUNTS_UNAVAILABLE", "cannot check the beneficiary account") from err

    async def get(self, payment_id: str) -> Payment:
        v = Violations()
        check_id(v, payment_id, "payment_id", "pay")
        v.raise_if_any()
        payment = await self._repository.get(payment_id)
        if payment is None:
            raise unknown("payment", payment_id, "read this payment")
        await self._require_debtor_access(payment.debtor_account_id, debit=False, action="read this payment")
        return payment

    async def payments_of(self, debtor: str, size: int, token: str) -> tuple[list[Payment], str]:
        v = Violations()
        check_id(v, debtor, "debtor_account_id", "acc")
        request = self._pages.request(v, size, token, ("payments", debtor))
        v.raise_if_any()
        await self._require_debtor_access(debtor, debit=False, action="read this account's payments")
        payments, next_after = await self._repository.page(debtor, request.after_seq, request.limit)
        return payments, request.next_token(next_after)

    async def reconcile(self, currency: str) -> Reconciliation:
        """What the network settled against what the ledger booked (admins; reads only)."""
        require_role(ADMIN, action="reconcile with the payment network")
        try:
            settlements = await self._gateway.settlements()
        except grpc.aio.AioRpcError as err:
            raise no_answer(err, "NETWORK_UNAVAILABLE", "cannot read the network's settlements") from err
        network = [
            NetworkSettlement(
                s.payment_id, s.status == vpb.NETWORK_PAYMENT_STATUS_SETTLED, Money.parse(s.currency_code, s.amount)
            )
            for s in settlements
            if not currency or s.currency_code == currency
        ]
        payments = await self._repository.external(currency)
        currencies = (
            [currency] if currency else sorted({p.amount.currency for p in payments} | {s.amount.currency for s in network})
        )
        booked = [credit for c in currencies for credit in await self._clearing_credits(c)]
        return reconcile(network, payments, booked)

    async def _clearing_credits(self, currency: str) -> list[BookedTransfer]:
        """What the ledger booked into the clearing account: the money that left for the network."""
        found: list[BookedTransfer] = []
        token = ""
        while True:
            try:
                page = await self._accounts.ListEntries(
                    apb.ListEntriesRequest(account_id=clearing_account(currency), page_size=500, page_token=token),
                    timeout=ACCOUNT_CALL_TIMEOUT,
                )
            except grpc.aio.AioRpcError as err:
                raise no_answer(err, "ACCOUNTS_UNAVAILABLE", "cannot read the clearing account") from err
            found.extend(
                BookedTransfer(e.transfer_id, Money.parse(currency, e.amount.amount))
                for e in page.entries
                if not e.amount.amount.startswith("-")
            )
            token = page.next_page_token
            if not token:
                return found


@og_component()
class StoreAndForward(BaseComponent):
    """Completes what requests started and could not finish (QUEUED payments once the circuit lets
    calls through; PENDING ones a crash or a lost answer left behind), as this context alone.
    With replicas, one forwards (the holder of the "payment-queue" lease): each step is
    idempotent, but two would double the calls."""

    BATCH = 50

    def __init__(
        self,
        repository: PaymentRepository,
        processor: PaymentProcessor,
        gateway: VelocityPayGateway,
        settings: Settings,
        clock: Clock,
        database: ContextDatabase,
    ) -> None:
        self._repository = repository
        self._database = database
        self._processor = processor
        self._gateway = gateway
        self._poll = settings.queue_poll_seconds
        self._stale = timedelta(seconds=settings.payment_stale_seconds)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="payment-store-and-forward")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def forward_once(self) -> int:
        """One pass over what is due; returns how many payments reached a final state."""
        now = self._clock.now()
        finished = 0
        for payment in await self._repository.due(now - self._stale, now, self._gateway.breaker.allows_calls(), self.BATCH):
            finished += await self._forward(payment)
        return finished

    async def _forward(self, payment: Payment) -> int:
        try:
            done = await self._processor.process(payment, live=False)
        except (AppError, grpc.aio.AioRpcError) as passing:  # no answer now: this one waits, the others go on
            self.logger.info("payment %s waits: %s", payment.payment_id, passing)
            await self._later(payment)
            return 0
        except Exception:
            self.logger.exception("forwarding %s failed", payment.payment_id)
            await self._later(payment)
            return 0
        return int(done.status in FINAL)

    async def _later(self, payment: Payment) -> None:
        current = await self._repository.get(payment.payment_id)
        if current is not None and current.status not in FINAL:
            await self._repository.advance(current.retried_later(self._clock.now()), current.status, [])

    async def _run(self) -> None:
        while True:
            try:
                if await self._database.lead("payment-queue"):
                    await self.forward_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.exception("store-and-forward pass failed")
            await asyncio.sleep(self._poll)
