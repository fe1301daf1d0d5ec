"""An operator's actions on payments stopped for one (NEEDS_OPERATOR): retry, which hands the
payment back to the bank's worker from where it stands, and refund, which gives its held funds
back to the debtor, four eyes above the configured amount. Admins only; each action idempotent by
request_id, decided on the locked payment in the unit that records it, and audited with the
reason the operator gave."""

from __future__ import annotations

from collections.abc import Callable

from common.clock import Clock
from common.config import Settings
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.errors import NotFound
from common.four_eyes import Approval
from common.idempotency import IdempotencyKey
from common.security.context import ADMIN
from common.security.policy import require_role
from services.payment.domain import Payment, refund_approval, refund_approved, retried_by_operator
from services.payment.repository import PaymentUnit, PaymentUnits
from services.payment.service import PaymentProcessor


@og_component()
class PaymentOperations(BaseComponent):
    def __init__(self, units: PaymentUnits, processor: PaymentProcessor, settings: Settings, clock: Clock) -> None:
        self._units = units
        self._processor = processor
        self._four_eyes_above = dict(settings.operator_four_eyes_minor)
        self._clock = clock

    async def retry(self, payment_id: str, reason: str, key: IdempotencyKey) -> Payment:
        """Hands the payment back to the worker, then drives it once on this request (the worker
        would take it too: each step is idempotent by the payment's own request ids)."""
        require_role(ADMIN, action="retry payments")
        now = self._clock.now()
        retried = await self._decide(payment_id, reason, key, lambda current: retried_by_operator(current, now))
        return await self._processor.process(retried, live=False)

    async def refund(self, payment_id: str, reason: str, key: IdempotencyKey) -> Payment:
        """Records this admin's approval of the refund; once decided (one admin below the
        four-eyes amount, two above), releases the hold on this request (or the worker does)."""
        admin = require_role(ADMIN, action="refund payments").user_id
        now = self._clock.now()

        def approve(current: Payment) -> Payment | None:
            step = refund_approval(current, admin, self._four_eyes_above)
            return None if step is Approval.NONE else refund_approved(current, admin, step, now)

        decided = await self._decide(payment_id, reason, key, approve)
        return await self._processor.process(decided, live=False) if decided.refund_decided_by else decided

    async def _decide(
        self, payment_id: str, reason: str, key: IdempotencyKey, decide: Callable[[Payment], Payment | None]
    ) -> Payment:
        """`decide` on the payment locked in the unit that claims the key and saves the outcome,
        with the operator's reason on the audit record; a refusal is kept as the key's answer and
        a replay answers the payment as it stands."""

        async def unit(uow: PaymentUnit) -> Payment:
            async def make() -> Payment:
                current = await uow.payments.locked(payment_id)
                if current is None:
                    raise NotFound("payment", payment_id)
                decided = decide(current)
                if decided is None:
                    return current
                await uow.payments.move(decided, current.status)
                await uow.record(f"{key.operation}.{decided.status.value}", [(payment_id, key.request_id)], reason)
                return decided

            async def replay(resource: str) -> Payment:
                return stored(await uow.payments.get(resource), resource)

            return await uow.once(key, payment_id, make, replay)

        return await self._units.write(unit)
