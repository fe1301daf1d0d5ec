"""Use cases of the lending context, and the loan disbursement saga:
reserve funds on the treasury with a hold -> record the disbursement -> move the money (capture)
-> mark the loan disbursed; compensated in reverse (release, cancel, reverse the transfer).

The saga's authority is the admin's who asked for the disbursement: the hold on the treasury is
placed with it, relayed to the account context (which makes this context the hold's owner). A saga
resumed in the background acts as this context alone: it captures, releases or reverses what its
own hold did, and where the hold's answer was lost it looks the hold up (closing the request id if
none was placed) instead of placing one: a saga that never reserved anything compensates.
Input arrives validated (api.py); each use case authorizes first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TypeVar

from common.clock import Clock
from common.config import Settings
from common.di import BaseComponent, og_component
from common.errors import NotFound, PermissionDenied, PreconditionFailed
from common.faults import fail_point
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import PageRequest
from common.saga.log import COMPLETED, SagaRecord
from common.saga.runner import SagaContext, SagaDefinition, SagaRunner, Step, StepRefused
from common.security.context import ADMIN, SecurityContext, caller_var, current_caller
from common.security.policy import require_customer_access, require_role, unknown
from services.lending.domain import Loan, LoanDisbursed, LoanDisbursementFailed, LoanStatus, ScheduledInstallment
from services.lending.ports import Accounts, Customers
from services.lending.repository import LoanRepository
from services.lending.schedule import annuity_schedule

SAGA = "loan-disbursement"
R = TypeVar("R")


@contextmanager
def _account_refusals() -> Iterator[None]:
    """The account context's answer to a step: a refusal for good is StepRefused (the saga
    compensates); a refusal of authority is this context's ACCESS_DENIED; no answer passes through
    (the step is retried)."""
    try:
        yield
    except PermissionDenied as refused:
        raise PermissionDenied("ACCESS_DENIED", "not allowed by the account context") from refused
    except PreconditionFailed as refused:
        raise StepRefused(refused.reason) from refused
    except NotFound as refused:
        raise StepRefused("NOT_FOUND") from refused


async def _step(call: Awaitable[R]) -> R:
    with _account_refusals():
        return await call


@og_component()
class LendingUseCases(BaseComponent):
    def __init__(
        self,
        loans: LoanRepository,
        accounts: Accounts,
        customers: Customers,
        sagas: SagaRunner,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._four_eyes_above = settings.loan_four_eyes_minor
        self._customers = customers
        self._loans = loans
        self._accounts = accounts
        self._sagas = sagas
        self._clock = clock

    async def initialize(self) -> None:
        self._sagas.register(
            SagaDefinition(
                SAGA,
                (
                    Step("reserve_funds", self._reserve, self._unreserve),
                    Step("create_disbursement", self._record, self._cancel_record),
                    Step("transfer_funds", self._transfer, self._reverse),
                    Step("mark_disbursed", self._mark_disbursed),
                ),
                on_finish=self._finished,
            )
        )

    # --- use cases ----------------------------------------------------------------------------

    async def apply(self, customer_id: str, account_id: str, principal: Money, term_months: int, key: IdempotencyKey) -> Loan:
        await require_customer_access(customer_id, assigned=self._manages, write=True, action="apply for loans for this customer")
        if not await self._customers.exists(customer_id):
            raise NotFound("customer", customer_id)
        try:
            account = await self._accounts.payout_account(account_id)
        except PermissionDenied as refused:
            raise PermissionDenied("ACCESS_DENIED", "not allowed by the account context") from refused
        if account.customer_id != customer_id or account.currency != principal.currency:
            raise PreconditionFailed(
                "ACCOUNT_NOT_ELIGIBLE", "the account must be the customer's, in the loan's currency", {"account_id": account_id}
            )
        now = self._clock.now()
        loan_id = new_id("lon")
        loan = Loan(
            loan_id,
            customer_id,
            account_id,
            principal,
            term_months,
            "",
            LoanStatus.APPLIED,
            f"sag-{loan_id}",
            now,
            now,
            applied_by=current_caller().user_id,
        )
        return await self._loans.add(loan, key)

    async def approve(self, loan_id: str, rate: str, key: IdempotencyKey) -> Loan:
        """An admin approves; above the four-eyes amount a first approval waits for a second admin,
        who is neither the applicant nor the first approver, at the same rate."""
        approver = require_role(ADMIN, action="approve loans").user_id
        loan = await self.get(loan_id)
        if loan.status is LoanStatus.APPROVED and loan.annual_rate == rate:
            return loan
        if loan.status is LoanStatus.AWAITING_SECOND_APPROVAL:
            return await self._second_approval(loan, approver, rate, key)
        if loan.status is LoanStatus.APPLIED and loan.principal.minor > self._four_eyes_above:
            changes = {"annual_rate": rate, "first_approver": approver}
            now, request_id = self._clock.now(), key.request_id
            if await self._loans.move(
                loan_id, LoanStatus.APPLIED, LoanStatus.AWAITING_SECOND_APPROVAL, now, changes, request_id=request_id
            ):
                return await self.get(loan_id)
        return await self._approved(loan, LoanStatus.APPLIED, rate, key)

    async def _second_approval(self, loan: Loan, approver: str, rate: str, key: IdempotencyKey) -> Loan:
        if approver == loan.first_approver:
            return loan  # their approval is recorded; the loan still waits for someone else's
        if approver == loan.applied_by:
            raise PreconditionFailed(
                "FOUR_EYES_REQUIRED",
                "the second approval must come from an admin who neither applied for the loan nor approved it first",
                {"loan_id": loan.loan_id},
            )
        if rate != loan.annual_rate:
            raise PreconditionFailed(
                "APPROVAL_RATE_DIFFERS",
                f"the first approval was at {loan.annual_rate}; approve at that rate",
                {"loan_id": loan.loan_id, "annual_interest_rate": loan.annual_rate},
            )
        return await self._approved(loan, LoanStatus.AWAITING_SECOND_APPROVAL, rate, key)

    async def _approved(self, loan: Loan, expected: LoanStatus, rate: str, key: IdempotencyKey) -> Loan:
        """`expected` -> APPROVED, with the repayment schedule from today."""
        schedule = annuity_schedule(loan.principal.minor, Decimal(rate), loan.term_months, self._clock.today())
        if not await self._loans.approve(loan.loan_id, expected, rate, schedule, self._clock.now(), key.request_id):
            current = await self.get(loan.loan_id)
            raise PreconditionFailed("LOAN_NOT_APPLIED", f"the loan is {current.status.value}", {"loan_id": loan.loan_id})
        return await self.get(loan.loan_id)

    async def disburse(self, loan_id: str, key: IdempotencyKey) -> tuple[Loan, SagaRecord | None]:
        """Starts (or resumes, or just reports) the disbursement saga; returns once it ended."""
        require_role(ADMIN, action="disburse loans")
        loan = await self.get(loan_id)
        if loan.status is LoanStatus.APPROVED:
            await self._loans.move(
                loan_id, LoanStatus.APPROVED, LoanStatus.DISBURSING, self._clock.now(), request_id=key.request_id
            )
        elif loan.status not in (LoanStatus.DISBURSING, LoanStatus.DISBURSED, LoanStatus.DISBURSEMENT_FAILED):
            raise PreconditionFailed("LOAN_NOT_APPROVED", f"the loan is {loan.status.value}", {"loan_id": loan_id})
        payload = {
            "loan_id": loan.loan_id,
            "account_id": loan.account_id,
            "currency": loan.principal.currency,
            "amount": loan.principal.amount,
            "customer_id": loan.customer_id,
            "authorized_by": current_caller().chain,
        }
        await self._sagas.begin(SAGA, loan.saga_id, payload)
        return await self.get_with_saga(loan_id)

    async def _manages(self, caller: SecurityContext, customer_id: str) -> bool:
        """Whether `caller` is the relationship manager assigned to the customer (they read the
        customer's loans, and change nothing)."""
        return await self._customers.manager_of(customer_id) == caller.user_id

    async def get(self, loan_id: str) -> Loan:
        loan = await self._loans.get(loan_id)
        if loan is None:
            raise unknown("loan", loan_id, "read this loan")
        await require_customer_access(loan.customer_id, assigned=self._manages, action="read this loan")
        return loan

    async def installments(self, loan_id: str, request: PageRequest) -> tuple[list[ScheduledInstallment], str]:
        """The schedule of a loan the caller may read (empty before approval)."""
        loan = await self.get(loan_id)
        page = await self._loans.installments(loan, request.after_seq, request.limit)
        return page.items, request.next_token(page.next_after)

    async def get_with_saga(self, loan_id: str) -> tuple[Loan, SagaRecord | None]:
        loan = await self.get(loan_id)
        return loan, await self._sagas.record(loan.saga_id)

    async def loans_of(self, customer_id: str, request: PageRequest) -> tuple[list[tuple[Loan, SagaRecord | None]], str]:
        await require_customer_access(customer_id, assigned=self._manages, action="list this customer's loans")
        page = await self._loans.page(customer_id, request.after_seq, request.limit)
        if not page.items and request.after is None and not await self._customers.exists(customer_id):
            raise NotFound("customer", customer_id)  # an empty list of a customer nobody knows would hide a typo
        return [(loan, await self._sagas.record(loan.saga_id)) for loan in page.items], request.next_token(page.next_after)

    # --- saga steps (idempotent by ctx.key) ----------------------------------------------------

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
        treasury = await _step(self._accounts.treasury(ctx.payload["currency"]))
        hold_id = await _step(
            self._accounts.place_hold(
                ctx.key("reserve_funds"), treasury, ctx.payload["account_id"], self._amount(ctx), f"loan {ctx.payload['loan_id']}"
            )
        )
        return {"hold_id": hold_id}

    async def _placed_hold(self, ctx: SagaContext) -> str:
        """The hold the reserve step placed, if it did ("" if not; LookupHold makes "no" final)."""
        try:
            return await _step(self._accounts.lookup_hold(ctx.key("reserve_funds")))
        except StepRefused:
            return ""

    async def _unreserve(self, ctx: SagaContext, result: dict[str, str]) -> None:
        hold_id = result.get("hold_id") or await self._placed_hold(ctx)
        if not hold_id:
            return  # nothing was reserved
        try:
            await _step(self._accounts.release_hold(ctx.key("reserve_funds", "undo"), hold_id))
        except StepRefused as refused:
            if str(refused) != "HOLD_ALREADY_RESOLVED":  # captured and reversed, or released: nothing held
                raise

    async def _record(self, ctx: SagaContext) -> dict[str, str]:
        await self._loans.record_disbursement(ctx.saga_id, ctx.payload["loan_id"], self._clock.now())
        return {"disbursement_id": ctx.saga_id}

    async def _cancel_record(self, ctx: SagaContext, result: dict[str, str]) -> None:
        await self._loans.cancel_disbursement(ctx.saga_id)

    async def _capture(self, ctx: SagaContext) -> str:
        hold_id = ctx.results["reserve_funds"]["hold_id"]
        return await _step(self._accounts.capture_hold(ctx.key("transfer_funds"), hold_id))

    async def _transfer(self, ctx: SagaContext) -> dict[str, str]:
        return {"transfer_id": await self._capture(ctx)}

    async def _reverse(self, ctx: SagaContext, result: dict[str, str]) -> None:
        fail_point("lending.reverse")
        transfer_id = result.get("transfer_id") or await self._captured_transfer(ctx)
        if not transfer_id:
            return  # the hold was never captured: nothing to reverse
        try:
            await _step(
                self._accounts.reverse_transfer(ctx.key("transfer_funds", "undo"), transfer_id, "loan disbursement compensated")
            )
        except StepRefused as refused:
            if str(refused) != "TRANSFER_ALREADY_REVERSED":
                raise

    async def _captured_transfer(self, ctx: SagaContext) -> str:
        """The transfer that captured the saga's hold, if the capture happened (read, not redone)."""
        hold_id = ctx.results.get("reserve_funds", {}).get("hold_id")
        if not hold_id:
            return ""
        return (await _step(self._accounts.held_funds(hold_id))).captured_by

    async def _mark_disbursed(self, ctx: SagaContext) -> dict[str, str]:
        """Idempotent: only a DISBURSING loan moves (and announces LoanDisbursed)."""
        fail_point("lending.mark_disbursed")
        p, now = ctx.payload, self._clock.now()
        event = LoanDisbursed(p["loan_id"], p["customer_id"], p["account_id"], self._amount(ctx), now)
        await self._loans.move(p["loan_id"], LoanStatus.DISBURSING, LoanStatus.DISBURSED, now, events=[event])
        return {}

    async def _finished(self, ctx: SagaContext, status: str, error: str) -> None:
        """A saga that did not complete leaves the loan DISBURSEMENT_FAILED (idempotent)."""
        if status == COMPLETED:
            return
        p, now = ctx.payload, self._clock.now()
        event = LoanDisbursementFailed(p["loan_id"], p["customer_id"], status, now)
        await self._loans.move(p["loan_id"], LoanStatus.DISBURSING, LoanStatus.DISBURSEMENT_FAILED, now, events=[event])


def current_caller_has_subject() -> bool:
    """Whether this task acts for a user (the request path) or as this context alone."""
    caller = caller_var.get()
    return caller is not None and caller.has_subject
