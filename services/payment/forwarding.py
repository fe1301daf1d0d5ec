"""The store-and-forward worker of the payment context: what requests started and could not
finish is completed in the background, as this context alone."""

from __future__ import annotations

from datetime import timedelta

from common.background import Background, every
from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.errors import AppError
from services.payment.domain import FINAL, Payment
from services.payment.ports import PaymentNetwork
from services.payment.repository import PaymentUnit, PaymentUnits
from services.payment.service import PaymentProcessor


@og_component()
class StoreAndForward(BaseComponent):
    """Completes what requests started and could not finish (QUEUED payments once the circuit lets
    calls through; PENDING ones a crash or a lost answer left behind), as this context alone.
    With replicas, one forwards (the holder of the "payment-queue" lease): each step is
    idempotent, but two would double the calls."""

    BATCH = 50

    def __init__(
        self,
        units: PaymentUnits,
        processor: PaymentProcessor,
        network: PaymentNetwork,
        settings: Settings,
        clock: Clock,
        database: ContextDatabase,
    ) -> None:
        self._units = units
        self._processor = processor
        self._network = network
        self._poll = settings.queue_poll_seconds
        self._stale = timedelta(seconds=settings.payment_stale_seconds)
        self._clock = clock
        self._loop = Background(
            "payment-store-and-forward",
            self.forward_once,
            every(self._poll),
            self.logger,
            lead=lambda: database.lead("payment-queue"),
        )

    async def start(self) -> None:
        self._loop.start()

    async def shutdown(self) -> None:
        await self._loop.stop()

    async def forward_once(self) -> int:
        """One pass over what is due; returns how many payments reached a final state."""
        now = self._clock.now()
        finished = 0
        external = self._network.accepts_calls()
        due = await self._units.read(lambda uow: uow.payments.due(now - self._stale, now, external, self.BATCH))
        for payment in due:
            finished += await self._forward(payment)
        return finished

    async def _forward(self, payment: Payment) -> int:
        try:
            done = await self._processor.process(payment, live=False)
        except AppError as passing:  # no answer now: this one waits, the others go on
            self.logger.info("payment %s waits: %s", payment.payment_id, passing)
            await self._later(payment)
            return 0
        except Exception:
            self.logger.exception("forwarding %s failed", payment.payment_id)
            await self._later(payment)
            return 0
        return int(done.status in FINAL)

    async def _later(self, payment: Payment) -> None:
        now = self._clock.now()

        async def postpone(uow: PaymentUnit) -> None:  # decided on the payment as it is now
            current = await uow.payments.locked(payment.payment_id)
            if current is not None and current.status not in FINAL:
                await uow.payments.move(current.retried_later(now), current.status)

        await self._units.write(postpone)
