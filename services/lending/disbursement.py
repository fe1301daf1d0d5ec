"""The disbursement saga's steps: reserve funds on the loan book with a hold, record the
disbursement, move the money (capture), mark the loan disbursed; compensated in reverse.

Each step is idempotent by its key (`ctx.key`). On the request path a step acts with the admin's
authority; resumed in the background, as this context alone: it captures, releases or reverses
what its own hold did, and where the hold's answer was lost it looks the hold up instead of
placing one. The admin's authority refused (a token revoked, a right withdrawn since the request
began) never strands what the saga did: the account context judges the caller before it looks
at a request id, so an earlier attempt's hold may exist although the step was refused. The hold
is looked up as this context, and what it did is finished or undone as this context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from common.callee import AUTHORITY, denial, reason_of
from common.clock import Clock
from common.errors import NotFound, PreconditionFailed
from common.faults import fail_point
from common.money import Money
from common.saga.log import COMPLETED
from common.saga.runner import SagaContext, StepRefused
from common.security.context import as_itself, caller_var
from services.lending.domain import LoanDisbursed, LoanDisbursementFailed, LoanEvent, LoanStatus
from services.lending.ports import Accounts
from services.lending.repository import LendingUnit, LendingUnits

R = TypeVar("R")
NOT_ALLOWED = "not allowed by the account context"  # its refusal of authority, in this context's words


@contextmanager
def _account_refusals() -> Iterator[None]:
    """The account context's answer to a step (`common.callee`), in the saga's terms: a refusal
    for good of what was asked is StepRefused (the saga compensates); a refusal of authority is
    this context's (`denial`), and like any other refusal, or no answer, passes on (the step is
    retried)."""
    try:
        yield
    except AUTHORITY as refused:
        raise denial(refused, NOT_ALLOWED) from refused
    except (PreconditionFailed, NotFound) as refused:
        raise StepRefused(reason_of(refused)) from refused


async def _step(call: Awaitable[R]) -> R:
    with _account_refusals():
        return await call


async def _own(call: Callable[[], Awaitable[R]]) -> R:
    """A step on what the saga's own hold did (capture, release, reverse, read it): with the task's
    authority (the admin's on the request path, whom the audit trail then names), or as this
    context once that authority is refused (a token revoked, a right withdrawn since the hold was
    placed): the hold is this context's, and finishing or undoing it needs nobody's say."""
    try:
        return await _step(call())
    except AUTHORITY:
        pass
    with as_itself():
        return await _step(call())


class DisbursementSteps:
    """The saga's steps and compensations, for the use cases that register the saga."""

    _accounts: Accounts
    _units: LendingUnits
    _clock: Clock

    @staticmethod
    def _amount(ctx: SagaContext) -> Money:
        return Money.parse(ctx.payload["currency"], ctx.payload["amount"])

    async def _reserve(self, ctx: SagaContext) -> dict[str, str]:
        """On the request path: the hold, with the admin's authority. Resumed in the background:
        only the hold that request may have placed (a lost answer), never a new one."""
        if not current_caller_has_subject():
            hold_id = await self._placed_hold(ctx)
            if not hold_id:
                raise StepRefused("HOLD_NOT_PLACED")
            return {"hold_id": hold_id}
        try:
            loan_book = await _step(self._accounts.loan_book(ctx.payload["currency"]))
            hold_id = await _step(
                self._accounts.place_hold(
                    ctx.key("reserve_funds"),
                    loan_book,
                    ctx.payload["account_id"],
                    self._amount(ctx),
                    f"loan {ctx.payload['loan_id']}",
                )
            )
        except AUTHORITY as refused:  # judged before the request id: final once it is looked up
            hold_id = await self._placed_hold(ctx)
            if not hold_id:
                raise StepRefused(refused.reason) from refused
        return {"hold_id": hold_id}

    async def _placed_hold(self, ctx: SagaContext) -> str:
        """The hold the reserve step placed, if it did ("" if not; LookupHold makes "no" final).
        Asked as this context: the request id is its own, and the answer needs nobody's authority."""
        try:
            with as_itself():
                return await _step(self._accounts.lookup_hold(ctx.key("reserve_funds")))
        except StepRefused:
            return ""

    async def _unreserve(self, ctx: SagaContext, result: dict[str, str]) -> None:
        hold_id = result.get("hold_id") or await self._placed_hold(ctx)
        if not hold_id:
            return  # nothing was reserved
        try:
            await _own(lambda: self._accounts.release_hold(ctx.key("reserve_funds", "undo"), hold_id))
        except StepRefused as refused:
            if str(refused) != "HOLD_ALREADY_RESOLVED":  # captured and reversed, or released: nothing held
                raise

    async def _record(self, ctx: SagaContext) -> dict[str, str]:
        now = self._clock.now()
        await self._units.write(lambda uow: uow.loans.record_disbursement(ctx.saga_id, ctx.payload["loan_id"], now))
        return {"disbursement_id": ctx.saga_id}

    async def _cancel_record(self, ctx: SagaContext, result: dict[str, str]) -> None:
        await self._units.write(lambda uow: uow.loans.cancel_disbursement(ctx.saga_id))

    async def _capture(self, ctx: SagaContext) -> str:
        hold_id = ctx.results["reserve_funds"]["hold_id"]
        return await _own(lambda: self._accounts.capture_hold(ctx.key("transfer_funds"), hold_id))

    async def _transfer(self, ctx: SagaContext) -> dict[str, str]:
        return {"transfer_id": await self._capture(ctx)}

    async def _reverse(self, ctx: SagaContext, result: dict[str, str]) -> None:
        fail_point("lending.reverse")
        transfer_id = result.get("transfer_id") or await self._captured_transfer(ctx)
        if not transfer_id:
            return  # the hold was never captured: nothing to reverse
        try:
            await _own(
                lambda: self._accounts.reverse_transfer(
                    ctx.key("transfer_funds", "undo"), transfer_id, "loan disbursement compensated"
                )
            )
        except StepRefused as refused:
            if str(refused) != "TRANSFER_ALREADY_REVERSED":
                raise

    async def _captured_transfer(self, ctx: SagaContext) -> str:
        """The transfer that captured the saga's hold, if the capture happened (read, not redone)."""
        hold_id = ctx.results.get("reserve_funds", {}).get("hold_id")
        if not hold_id:
            return ""
        return (await _own(lambda: self._accounts.held_funds(hold_id))).captured_by

    async def _mark_disbursed(self, ctx: SagaContext) -> dict[str, str]:
        """Idempotent: only a DISBURSING loan moves (and announces LoanDisbursed)."""
        fail_point("lending.mark_disbursed")
        p, now = ctx.payload, self._clock.now()
        event = LoanDisbursed(p["loan_id"], p["customer_id"], p["account_id"], self._amount(ctx), now)
        await self._units.write(_moved(p["loan_id"], LoanStatus.DISBURSED, event))
        return {}

    async def _finished(self, ctx: SagaContext, status: str, error: str) -> None:
        """A saga that did not complete leaves the loan DISBURSEMENT_FAILED (idempotent)."""
        if status == COMPLETED:
            return
        p, now = ctx.payload, self._clock.now()
        event = LoanDisbursementFailed(p["loan_id"], p["customer_id"], status, now)
        await self._units.write(_moved(p["loan_id"], LoanStatus.DISBURSEMENT_FAILED, event))


def current_caller_has_subject() -> bool:
    """Whether this task acts for a user (the request path) or as this context alone."""
    caller = caller_var.get()
    return caller is not None and caller.has_subject


def _moved(loan_id: str, status: LoanStatus, event: LoanEvent) -> Callable[[LendingUnit], Awaitable[None]]:
    """The unit that ends a disbursement: a DISBURSING loan moves to `status` and announces
    `event`; a loan already moved on stays as it is, silently (the saga's steps are retried)."""

    async def move(uow: LendingUnit) -> None:
        if await uow.loans.move(loan_id, LoanStatus.DISBURSING, status, event.at, None):
            await uow.publish([event])

    return move
