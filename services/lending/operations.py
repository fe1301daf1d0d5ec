"""Use cases of the bank's operators (admins) in the lending context: the sagas, among them the
disbursements stopped FAILED_NEEDS_OPERATOR, listed, retried and compensated; and the loans in
arrears, listed.

Retry and compensation are the saga framework's (`common.saga.operator.act`: decided on the run's
locked row, exactly one of two operators acting at once acts), in a unit of work of this context
that also does what the loan needs: a retried disbursement's loan goes back from
DISBURSEMENT_FAILED to DISBURSING (the saga's last step moves only a DISBURSING loan). A
compensation moves the disbursed money back to the loan book, so above the currency's
`operator_four_eyes_minor` it needs two admins (`common.four_eyes`), as any refund does. Each
request is idempotent by its request_id, and its reason goes to the audit trail with the change.
The runner then drives the saga as it drives every saga; the answer waits for its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common.clock import Clock
from common.config import Settings
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.filtering import Filter
from common.four_eyes import Approval, approval
from common.idempotency import IdempotencyKey
from common.money import Money
from common.pagination import PageRequest
from common.saga.log import TERMINAL, SagaRecord
from common.saga.operator import COMPENSATE, RETRY, Outcome, SagaRun, act
from common.saga.runner import SagaRunner
from common.security.context import ADMIN
from common.security.policy import require_role
from services.lending.domain import LoanStatus, LoanView
from services.lending.repository import LendingUnit, LendingUnits
from services.lending.servicing import position


def saga_amount(record: SagaRecord) -> Money | None:
    """The money a disbursement saga moves (its principal), None for a saga of another kind."""
    p = record.payload
    return Money.parse(p["currency"], p["amount"]) if "currency" in p and "amount" in p else None


@og_component()
class OperatorUseCases(BaseComponent):
    """What only admins do on the bank's sagas and loans as a whole (see the module doc)."""

    def __init__(self, units: LendingUnits, sagas: SagaRunner, clock: Clock, settings: Settings) -> None:
        self._units = units
        self._sagas = sagas
        self._clock = clock
        self._four_eyes_above = dict(settings.operator_four_eyes_minor)

    async def sagas(self, where: Filter, request: PageRequest) -> tuple[list[SagaRun], str]:
        require_role(ADMIN, action="list sagas")
        page = await self._units.read(lambda uow: uow.sagas.page(where, request.after_key, request.limit))
        return page.items, request.next_token(page.next_after)

    async def retry(self, saga_id: str, reason: str, key: IdempotencyKey) -> SagaRun:
        """Sends a saga stopped FAILED_NEEDS_OPERATOR forward again from its failed step."""
        approver = require_role(ADMIN, action="retry sagas").user_id
        now = self._clock.now()

        async def retried(uow: LendingUnit) -> Outcome:
            outcome = await act(uow.sagas, saga_id, RETRY, approver)
            run = stored(await uow.sagas.get(saga_id), saga_id)
            loan_id = run.record.payload.get("loan_id")
            if (
                outcome is Outcome.STARTED and loan_id
            ):  # its last step moves a DISBURSING loan only; on failure it ends DISBURSEMENT_FAILED again
                await uow.loans.move(loan_id, LoanStatus.DISBURSEMENT_FAILED, LoanStatus.DISBURSING, now, key.request_id)
            return outcome

        return await self._operate(saga_id, reason, key, retried)

    async def compensate(self, saga_id: str, reason: str, key: IdempotencyKey) -> SagaRun:
        """Runs the compensations of a saga stopped FAILED_NEEDS_OPERATOR backward; above the
        operators' four-eyes amount the first admin's approval waits for another admin's."""
        approver = require_role(ADMIN, action="compensate sagas").user_id

        def four_eyes(record: SagaRecord, first_approver: str) -> Approval:
            amount = saga_amount(record)
            if amount is None:  # a saga that moves no money the bank knows of: two admins, to be safe
                return approval(1, "", {}, approver, first_approver)
            return approval(amount.minor, amount.currency, self._four_eyes_above, approver, first_approver)

        return await self._operate(saga_id, reason, key, lambda uow: act(uow.sagas, saga_id, COMPENSATE, approver, four_eyes))

    async def _operate(
        self, saga_id: str, reason: str, key: IdempotencyKey, decide: Callable[[LendingUnit], Awaitable[Outcome]]
    ) -> SagaRun:
        """Once per request_id (a refusal stays its answer), the reason recorded with the change;
        then the saga as it ends (a replay, or an approval waiting for another admin: as it is)."""

        async def unit(uow: LendingUnit) -> None:
            async def make() -> None:
                await decide(uow)

            await uow.once(key, saga_id, make, _nothing, reason=reason)

        await self._units.write(unit)
        run = await self._run(saga_id)
        if run.record.status not in TERMINAL:
            await self._sagas.run(saga_id)
            run = await self._run(saga_id)
        return run

    async def _run(self, saga_id: str) -> SagaRun:
        return stored(await self._units.read(lambda uow: uow.sagas.get(saga_id)), saga_id)

    async def arrears(self, where: Filter, request: PageRequest) -> tuple[list[LoanView], str]:
        """The loans owing something on installments due by today, matching `where`, each with
        its position today."""
        require_role(ADMIN, action="list loans in arrears")
        today = self._clock.today()

        async def read(uow: LendingUnit) -> tuple[list[LoanView], int | None]:
            page = await uow.loans.in_arrears(where, today, request.after_seq, request.limit)
            states = await uow.installments.states_of([loan.loan_id for loan in page.items])
            return [LoanView(loan, position(states[loan.loan_id], today)) for loan in page.items], page.next_after

        views, next_after = await self._units.read(read)
        return views, request.next_token(next_after)


async def _nothing(_: str) -> None:
    """A replayed request: what its first request did stands (the saga reports how it ended)."""
