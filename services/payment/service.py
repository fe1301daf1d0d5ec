"""Use cases of the payment context.

A payment reserves the debtor's funds first (a hold, placed with the caller's identity, so the
account context decides whether the caller may spend), then: internal payments capture the hold
to the beneficiary's account; external ones go to VelocityPay through a circuit breaker and are
captured to the clearing account when settled, released when the network refuses them, and kept
QUEUED (funds still held) while the network cannot be reached. A worker forwards the queue when
the circuit lets calls through. Every step is idempotent (request ids derived from the payment
id), so a retry or a restart never pays twice.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf.message import Message
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.payment.v1 import events_pb2
from ogpgy.type.v1 import money_pb2
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1.network_pb2_grpc import PaymentNetworkServiceStub

from common.clock import Clock
from common.config import Settings
from common.di import BaseComponent, og_component
from common.errors import NotFound, PermissionDenied, Unavailable
from common.events.outbox import OutboxRelay
from common.grpc.convert import timestamp
from common.grpc.status import reason_of
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import page_request
from common.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
from common.resilience.shared import SharedBreakerState
from common.security.component import Security
from common.validation import Violations, check_id, check_request_id, check_text
from services.payment.domain import FINAL, Beneficiary, FraudRules, Payment, PaymentStatus, validate_beneficiary
from services.payment.repository import PaymentDatabase, PaymentRepository

FRAUD_FILE = Path(__file__).parent / "fraud.toml"
CONTEXT = "payment"
ACCOUNT_CALL_TIMEOUT = 5.0
Metadata = Sequence[tuple[str, str]] | None


def clearing_account(currency: str) -> str:
    """The account context's clearing account: where money leaves for other banks."""
    return f"acc_CLEARING_{currency}"


def _money_pb(m: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=m.currency, amount=m.amount)


def events_for(p: Payment) -> list[Message]:
    """The event a payment's state announces (none while it is pending)."""
    amount, at = _money_pb(p.amount), timestamp(p.updated_at)
    if p.status is PaymentStatus.COMPLETED:
        return [events_pb2.PaymentCompleted(payment_id=p.payment_id, debtor_account_id=p.debtor_account_id, amount=amount,
                                            transfer_id=p.transfer_id, complete_time=at)]  # fmt: skip
    if p.status in (PaymentStatus.FAILED, PaymentStatus.REJECTED):
        return [events_pb2.PaymentFailed(payment_id=p.payment_id, debtor_account_id=p.debtor_account_id, amount=amount,
                                         reason=p.failure_reason, fail_time=at)]  # fmt: skip
    if p.status is PaymentStatus.QUEUED:
        return [events_pb2.PaymentQueued(payment_id=p.payment_id, debtor_account_id=p.debtor_account_id, amount=amount,
                                         queue_time=at)]  # fmt: skip
    return []


@og_component()
class FraudScreening(BaseComponent):
    """Rules from configuration (`fraud_rules_path`, else the shipped fraud.toml)."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.fraud_rules_path or FRAUD_FILE
        self._config: dict[str, object] = {}

    async def initialize(self) -> None:
        self._config = tomllib.loads(self._path.read_text(encoding="utf-8"))

    def rules(self, currency: str) -> FraudRules:
        c = self._config
        return FraudRules(
            max_amount=Money.parse(currency, str(c["max_amount"])),
            window_seconds=int(c["window_seconds"]),  # type: ignore[call-overload]
            max_payments_per_window=int(c["max_payments_per_window"]),  # type: ignore[call-overload]
            max_amount_per_window=Money.parse(currency, str(c["max_amount_per_window"])),
        )


@og_component()
class VelocityPayGateway(BaseComponent):
    """The network behind a circuit breaker, whose state all instances share through Redis."""

    def __init__(self, network: PaymentNetworkServiceStub, settings: Settings) -> None:
        self._network = network
        self._timeout = settings.network_timeout_seconds
        self.breaker = CircuitBreaker(
            "velocitypay", BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds)
        )
        self._shared = SharedBreakerState(self.breaker, settings.redis_url) if settings.redis_url else None

    async def initialize(self) -> None:
        if self._shared is not None:
            await self._shared.start()

    async def shutdown(self) -> None:
        if self._shared is not None:
            await self._shared.stop()

    async def submit(self, p: Payment) -> vpb.SubmitPaymentResponse:
        request = vpb.SubmitPaymentRequest(
            payment_id=p.payment_id, beneficiary_iban=p.beneficiary.iban, beneficiary_name=p.beneficiary.name,
            currency_code=p.amount.currency, amount=p.amount.amount, reference=p.reference,
        )  # fmt: skip
        return await self.breaker.call(self._network.SubmitPayment, request, timeout=self._timeout)


@og_component()
class PaymentProcessor(BaseComponent):
    """Takes a payment from its stored state to the next one; safe to run again on any state."""

    def __init__(self, repository: PaymentRepository, accounts: AccountServiceStub, gateway: VelocityPayGateway,
                 clock: Clock, relay: OutboxRelay) -> None:  # fmt: skip
        self._repository = repository
        self._accounts = accounts
        self._gateway = gateway
        self._clock = clock
        self._relay = relay

    async def _move(self, p: Payment, status: PaymentStatus, **changes: str) -> Payment:
        moved = p.moved_to(status, self._clock.now(), **changes)
        stored = await self._repository.advance(moved, p.status, events_for(moved))
        self._relay.nudge()
        return stored

    async def process(self, p: Payment, metadata: Metadata = None) -> Payment:
        """`metadata` None: the caller's identity travels on (the request path); the worker passes
        the payment context's own service identity."""
        if p.status in FINAL:
            return p
        if not p.hold_id:
            p = await self._hold(p, metadata)
            if p.status in FINAL:
                return p
        if not p.beneficiary.external:
            return await self._capture(p, metadata)
        try:
            answer = await self._gateway.submit(p)
        except (CircuitOpenError, grpc.aio.AioRpcError) as err:
            if isinstance(err, grpc.aio.AioRpcError) and not self._gateway.breaker.counts_as_failure(err):
                return await self._release(p, metadata, f"NETWORK_REFUSED_{err.code().name}")
            return p if p.status is PaymentStatus.QUEUED else await self._move(p, PaymentStatus.QUEUED)
        if answer.status == vpb.NETWORK_PAYMENT_STATUS_SETTLED:
            return await self._capture(p, metadata)
        return await self._release(p, metadata, answer.reject_reason or "NETWORK_REJECTED")

    async def _hold(self, p: Payment, metadata: Metadata) -> Payment:
        credit = p.beneficiary.iban and clearing_account(p.amount.currency) or p.beneficiary.account_id
        request = apb.PlaceHoldRequest(request_id=f"{p.payment_id}-hold", debit_account_id=p.debtor_account_id,
                                       credit_account_id=credit, amount=_money_pb(p.amount), description=p.reference)  # fmt: skip
        try:
            hold = await self._accounts.PlaceHold(request, timeout=ACCOUNT_CALL_TIMEOUT, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                await self._move(p, PaymentStatus.FAILED, failure_reason="ACCESS_DENIED")
                raise PermissionDenied("ACCESS_DENIED", "the caller may not spend from the debtor account",
                                       {"payment_id": p.payment_id}) from err  # fmt: skip
            reason = _reason(err)
            if reason is None:
                # No answer: the hold may or may not have been placed (found by tests/faults: a
                # payment failed here once left its hold placed). The payment stays PENDING; the
                # worker asks again with the same key, gets the hold if it exists, and goes on.
                raise _kept(p) from err
            return await self._move(p, PaymentStatus.FAILED, failure_reason=reason)
        # Not stored yet: PlaceHold is idempotent by a request id derived from the payment, so
        # after a crash the worker places it again and gets this same hold back.
        return replace(p, hold_id=hold.hold.hold_id)

    async def _capture(self, p: Payment, metadata: Metadata) -> Payment:
        request = apb.CaptureHoldRequest(request_id=f"{p.payment_id}-capture", hold_id=p.hold_id)
        with _kept_if_accounts_unavailable(p):
            captured = await self._accounts.CaptureHold(request, timeout=ACCOUNT_CALL_TIMEOUT, metadata=metadata)
        return await self._move(p, PaymentStatus.COMPLETED, transfer_id=captured.transfer.transfer_id)

    async def _release(self, p: Payment, metadata: Metadata, reason: str) -> Payment:
        request = apb.ReleaseHoldRequest(request_id=f"{p.payment_id}-release", hold_id=p.hold_id)
        with _kept_if_accounts_unavailable(p):
            await self._accounts.ReleaseHold(request, timeout=ACCOUNT_CALL_TIMEOUT, metadata=metadata)
        return await self._move(p, PaymentStatus.FAILED, failure_reason=reason)


@contextmanager
def _kept_if_accounts_unavailable(p: Payment) -> Iterator[None]:
    """The hold is placed and the payment stored: when the account context cannot answer now,
    the store-and-forward worker finishes the payment later. The caller hears UNAVAILABLE with
    the payment's id, not an internal error."""
    try:
        yield
    except grpc.aio.AioRpcError as err:
        if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        raise _kept(p) from err


def _kept(p: Payment) -> Unavailable:
    return Unavailable("ACCOUNTS_UNAVAILABLE", "the account context did not answer; the payment is kept and completes by itself "
                       "(GetPayment shows it)", {"payment_id": p.payment_id})  # fmt: skip


def _reason(err: grpc.aio.AioRpcError) -> str | None:
    """The business reason of a refused hold, None when the account context could not answer."""
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return "ACCOUNT_NOT_FOUND"
    if err.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return reason_of(err) or "REFUSED_BY_ACCOUNTS"
    return None


@og_component()
class PaymentApplicationService(BaseComponent):
    def __init__(self, repository: PaymentRepository, processor: PaymentProcessor, fraud: FraudScreening,
                 accounts: AccountServiceStub, clock: Clock, relay: OutboxRelay) -> None:  # fmt: skip
        self._repository = repository
        self._processor = processor
        self._fraud = fraud
        self._accounts = accounts
        self._clock = clock
        self._relay = relay

    async def create(self, debtor: str, beneficiary: Beneficiary, amount: Money | None, reference: str,
                     v: Violations, key: IdempotencyKey) -> Payment:  # fmt: skip
        check_request_id(v, key.request_id)
        check_id(v, debtor, "debtor_account_id", "acc")
        validate_beneficiary(v, beneficiary, debtor)
        check_text(v, reference, "reference", max_len=140, required=False)
        v.raise_if_any()
        assert amount is not None
        now = self._clock.now()
        payment = Payment(new_id("pay"), debtor, beneficiary, amount, reference, PaymentStatus.PENDING, now, now)
        created = await self._repository.create(payment, key, self._fraud.rules(amount.currency), events_for)
        self._relay.nudge()
        if created.replayed or created.payment.status in FINAL:
            return created.payment
        return await self._processor.process(created.payment)

    async def _require_debtor_access(self, account_id: str) -> None:
        """Reading a payment needs reading its debtor account: the account context decides."""
        try:
            await self._accounts.GetAccount(apb.GetAccountRequest(account_id=account_id), timeout=ACCOUNT_CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied("ACCESS_DENIED", "the caller may not read this account's payments") from err
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("account", account_id) from err
            raise Unavailable("ACCOUNTS_UNAVAILABLE", f"cannot check access: {err.code().name}") from err

    async def get(self, payment_id: str) -> Payment:
        v = Violations()
        check_id(v, payment_id, "payment_id", "pay")
        v.raise_if_any()
        payment = await self._repository.get(payment_id)
        if payment is None:
            raise NotFound("payment", payment_id)
        await self._require_debtor_access(payment.debtor_account_id)
        return payment

    async def list(self, debtor: str, size: int, token: str) -> tuple[list[Payment], str]:
        v = Violations()
        check_id(v, debtor, "debtor_account_id", "acc")
        request = page_request(v, size, token, ("payments", debtor))
        v.raise_if_any()
        await self._require_debtor_access(debtor)
        payments, next_after = await self._repository.page(debtor, request.after, request.limit)
        return payments, request.next_token(next_after)


@og_component()
class StoreAndForward(BaseComponent):
    """Forwards QUEUED payments (and PENDING ones a crash left behind) once the circuit lets calls
    through, under the payment context's own service identity. With replicas, one forwards (the
    holder of the "payment-queue" lease): each step is idempotent, but two would double the calls."""

    STALE = timedelta(seconds=5)
    BATCH = 50

    def __init__(self, repository: PaymentRepository, processor: PaymentProcessor, gateway: VelocityPayGateway,
                 security: Security, settings: Settings, clock: Clock, database: PaymentDatabase) -> None:  # fmt: skip
        self._repository = repository
        self._database = database
        self._processor = processor
        self._gateway = gateway
        self._security = security
        self._poll = settings.queue_poll_seconds
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
        if not self._gateway.breaker.allows_calls():
            return 0
        metadata = (("authorization", f"Bearer {self._security.service_token(CONTEXT)}"),)
        finished = 0
        for payment in await self._repository.due(self._clock.now() - self.STALE, self.BATCH):
            try:
                done = await self._processor.process(payment, metadata)
            except Exception:  # noqa: BLE001 - stays due; the next pass tries again
                self.logger.exception("forwarding %s failed", payment.payment_id)
                continue
            finished += done.status in FINAL
            if not self._gateway.breaker.allows_calls():
                break
        return finished

    async def _run(self) -> None:
        while True:
            try:
                if await self._database.lead("payment-queue"):
                    await self.forward_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the loop must outlive a bad pass
                self.logger.exception("store-and-forward pass failed")
            await asyncio.sleep(self._poll)
