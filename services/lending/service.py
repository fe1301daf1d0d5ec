"""Use cases of the lending context, and the loan disbursement saga:
reserve funds on the treasury with a hold -> record the disbursement -> move the money (capture)
-> mark the loan disbursed; compensated in reverse (release, cancel, reverse the transfer).

The saga's authority is the admin's who asked for the disbursement: the hold on the treasury is
placed with it, relayed to the account context (which makes this context the hold's owner). A saga
resumed in the background acts as this context alone: it captures, releases or reverses what its
own hold did, and where the hold's answer was lost it looks the hold up (closing the request id if
none was placed) instead of placing one: a saga that never reserved anything compensates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from common.clock import Clock
from common.di import BaseComponent, og_component
from common.errors import NotFound, PermissionDenied, PreconditionFailed
from common.events.outbox import OutboxRelay
from common.faults import fail_point
from common.grpc.convert import timestamp
from common.grpc.status import no_answer, reason_of
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import PageTokens
from common.saga.log import COMPLETED, SagaRecord
from common.saga.runner import SagaContext, SagaDefinition, SagaRunner, Step, StepRefused
from common.security.context import ADMIN, as_itself, caller_var, current_caller
from common.security.policy import require_customer_access, require_role, unknown
from common.validation import Violations, check_id, check_request_id
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from ogpgy.lending.v1 import events_pb2
from ogpgy.type.v1 import money_pb2
from services.lending.domain import Loan, LoanStatus, parse_rate, validate_terms
from services.lending.repository import LoanRepository

SAGA = "loan-disbursement"
CALL_TIMEOUT = 5.0


def treasury(currency: str) -> str:
    """The account context's treasury account: where loans are paid from."""
    return f"acc_TREASURY_{currency}"


@og_component()
class LendingService(BaseComponent):
    def __init__(
        self,
        loans: LoanRepository,
        accounts: AccountServiceStub,
        customers: CustomerServiceStub,
        sagas: SagaRunner,
        clock: Clock,
        relay: OutboxRelay,
        pages: PageTokens,
    ) -> None:
        self._customers = customers
        self._loans = loans
        self._accounts = accounts
        self._sagas = sagas
        self._clock = clock
        self._relay = relay
        self._pages = pages

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

    async def apply(
        self, customer_id: str, account_id: str, principal: Money | None, term_months: int, v: Violations, key: IdempotencyKey
    ) -> Loan:
        check_request_id(v, key.request_id)
        check_id(v, customer_id, "customer_id", "cus")
        check_id(v, account_id, "account_id", "acc")
        validate_terms(v, principal, term_months)
        v.raise_if_any()
        assert principal is not None
        await require_customer_access(customer_id, assigned=_never, write=True, action="apply for loans for this customer")
        if not await self._customer_known(customer_id):
            raise NotFound("customer", customer_id)
        account = await self._account(account_id)
        if account.account.customer_id != customer_id or account.account.balance.currency_code != principal.currency:
            raise PreconditionFailed(
                "ACCOUNT_NOT_ELIGIBLE", "the account must be the customer's, in the loan's currency", {"account_id": account_id}
            )
        now = self._clock.now()
        loan_id = new_id("lon")
        loan = Loan(loan_id, customer_id, account_id, principal, term_months, "", LoanStatus.APPLIED, f"sag-{loan_id}", now, now)
        return await self._loans.add(loan, key)

    async def approve(self, loan_id: str, rate: str, key: IdempotencyKey) -> Loan:
        require_role(ADMIN, action="approve loans")
        v = Violations()
        check_request_id(v, key.request_id)
        parse_rate(v, rate)
        v.raise_if_any()
        loan = await self.get(loan_id)
        if loan.status is LoanStatus.APPROVED and loan.annual_rate == rate:
            return loan
        if not await self._loans.move(loan_id, LoanStatus.APPLIED, LoanStatus.APPROVED, self._clock.now(), {"annual_rate": rate}):
            raise PreconditionFailed("LOAN_NOT_APPLIED", f"the loan is {loan.status.value}", {"loan_id": loan_id})
        return await self.get(loan_id)

    async def disburse(self, loan_id: str, key: IdempotencyKey) -> tuple[Loan, SagaRecord | None]:
        """Starts (or resumes, or just reports) the disbursement saga; returns once it ended."""
        require_role(ADMIN, action="disburse loans")
        v = Violations()
        check_request_id(v, key.request_id)
        v.raise_if_any()
        loan = await self.get(loan_id)
        if loan.status is LoanStatus.APPROVED:
            await self._loans.move(loan_id, LoanStatus.APPROVED, LoanStatus.DISBURSING, self._clock.now())
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

    async def get(self, loan_id: str) -> Loan:
        v = Violations()
        check_id(v, loan_id, "loan_id", "lon")
        v.raise_if_any()
        loan = await self._loans.get(loan_id)
        if loan is None:
            raise unknown("loan", loan_id, "read this loan")
        await require_customer_access(loan.customer_id, assigned=_never, action="read this loan")
        return loan

    async def get_with_saga(self, loan_id: str) -> tuple[Loan, SagaRecord | None]:
        loan = await self.get(loan_id)
        return loan, await self._sagas.record(loan.saga_id)

    async def list(self, customer_id: str, size: int, token: str) -> tuple[list[tuple[Loan, SagaRecord | None]], str]:
        v = Violations()
        check_id(v, customer_id, "customer_id", "cus")
        request = self._pages.request(v, size, token, ("loans", customer_id))
        v.raise_if_any()
        await require_customer_access(customer_id, assigned=_never, action="list this customer's loans")
        loans, next_after = await self._loans.page(customer_id, request.after_seq, request.limit)
        if not loans and request.after is None and not await self._customer_known(customer_id):
            raise NotFound("customer", customer_id)  # an empty list of a customer nobody knows would hide a typo
        return [(loan, await self._sagas.record(loan.saga_id)) for loan in loans], request.next_token(next_after)

    async def _customer_known(self, customer_id: str) -> bool:
        """Asked of the customer context as this context itself (a read it imports)."""
        try:
            with as_itself():
                await self._customers.GetCustomer(cpb.GetCustomerRequest(customer_id=customer_id), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise no_answer(err, "CUSTOMER_CONTEXT_UNAVAILABLE", "cannot check the customer") from err
        return True

    async def _account(self, account_id: str) -> apb.GetAccountResponse:
        """The account a loan is paid into, read with the caller's authority."""
        try:
            answer: apb.GetAccountResponse = await self._accounts.GetAccount(
                apb.GetAccountRequest(account_id=account_id), timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("account", account_id) from err
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied("ACCESS_DENIED", "not allowed by the account context") from err
            raise no_answer(err, "ACCOUNTS_UNAVAILABLE", "the account context did not answer") from err
        return answer

    # --- saga steps (idempotent by ctx.key) ----------------------------------------------------

    async def _call(self, method: Callable[..., Awaitable[object]], request: object) -> Any:
        """A call to the account context, with whatever authority this task carries: the admin's on
        the request path, this context's own when a saga is resumed in the background."""
        try:
            return await method(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied("ACCESS_DENIED", "not allowed by the account context") from err
            if err.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise StepRefused(reason_of(err) or err.code().name) from err
            raise no_answer(err, "ACCOUNTS_UNAVAILABLE", "the account context did not answer") from err

    @staticmethod
    def _amount(ctx: SagaContext) -> money_pb2.Money:
        return money_pb2.Money(currency_code=ctx.payload["currency"], amount=ctx.payload["amount"])

    async def _reserve(self, ctx: SagaContext) -> dict[str, str]:
        """On the request path: the hold, with the admin's authority. Resumed in the background:
        only the hold that request may have placed (a lost answer), never a new one."""
        if not current_caller_has_subject():
            hold = await self._placed_hold(ctx)
            if hold is None:
                raise StepRefused("HOLD_NOT_PLACED")
            return {"hold_id": hold.hold_id}
        placed = await self._call(
            self._accounts.PlaceHold,
            apb.PlaceHoldRequest(
                request_id=ctx.key("reserve_funds"),
                debit_account_id=treasury(ctx.payload["currency"]),
                credit_account_id=ctx.payload["account_id"],
                amount=self._amount(ctx),
                description=f"loan {ctx.payload['loan_id']}",
            ),
        )
        return {"hold_id": placed.hold.hold_id}

    async def _placed_hold(self, ctx: SagaContext) -> apb.Hold | None:
        """The hold the reserve step placed, if it did (LookupHold makes "no" final)."""
        try:
            found = await self._call(self._accounts.LookupHold, apb.LookupHoldRequest(request_id=ctx.key("reserve_funds")))
        except StepRefused:
            return None
        hold: apb.Hold = found.hold
        return hold

    async def _unreserve(self, ctx: SagaContext, result: dict[str, str]) -> None:
        hold_id = result.get("hold_id") or getattr(await self._placed_hold(ctx), "hold_id", "")
        if not hold_id:
            return  # nothing was reserved
        try:
            await self._call(
                self._accounts.ReleaseHold, apb.ReleaseHoldRequest(request_id=ctx.key("reserve_funds", "undo"), hold_id=hold_id)
            )
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
        captured = await self._call(
            self._accounts.CaptureHold, apb.CaptureHoldRequest(request_id=ctx.key("transfer_funds"), hold_id=hold_id)
        )
        transfer_id: str = captured.transfer.transfer_id
        return transfer_id

    async def _transfer(self, ctx: SagaContext) -> dict[str, str]:
        return {"transfer_id": await self._capture(ctx)}

    async def _reverse(self, ctx: SagaContext, result: dict[str, str]) -> None:
        fail_point("lending.reverse")
        transfer_id = result.get("transfer_id") or await self._captured_transfer(ctx)
        if not transfer_id:
            return  # the hold was never captured: nothing to reverse
        try:
            await self._call(
                self._accounts.ReverseTransfer,
                apb.ReverseTransferRequest(
                    request_id=ctx.key("transfer_funds", "undo"), transfer_id=transfer_id, reason="loan disbursement compensated"
                ),
            )
        except StepRefused as refused:
            if str(refused) != "TRANSFER_ALREADY_REVERSED":
                raise

    async def _captured_transfer(self, ctx: SagaContext) -> str:
        """The transfer that captured the saga's hold, if the capture happened (read, not redone)."""
        hold_id = ctx.results.get("reserve_funds", {}).get("hold_id")
        if not hold_id:
            return ""
        found = await self._call(self._accounts.GetHold, apb.GetHoldRequest(hold_id=hold_id))
        return str(found.hold.transfer_id) if found.hold.status == apb.HOLD_STATUS_CAPTURED else ""

    async def _mark_disbursed(self, ctx: SagaContext) -> dict[str, str]:
        """Idempotent: only a DISBURSING loan moves (and announces LoanDisbursed)."""
        fail_point("lending.mark_disbursed")
        p, now = ctx.payload, self._clock.now()
        event = events_pb2.LoanDisbursed(
            loan_id=p["loan_id"],
            customer_id=p["customer_id"],
            account_id=p["account_id"],
            principal=self._amount(ctx),
            disburse_time=timestamp(now),
        )
        await self._loans.move(p["loan_id"], LoanStatus.DISBURSING, LoanStatus.DISBURSED, now, events=[event])
        self._relay.nudge()
        return {}

    async def _finished(self, ctx: SagaContext, status: str, error: str) -> None:
        """A saga that did not complete leaves the loan DISBURSEMENT_FAILED (idempotent)."""
        if status == COMPLETED:
            return
        p, now = ctx.payload, self._clock.now()
        event = events_pb2.LoanDisbursementFailed(
            loan_id=p["loan_id"], customer_id=p["customer_id"], reason=status, fail_time=timestamp(now)
        )
        await self._loans.move(p["loan_id"], LoanStatus.DISBURSING, LoanStatus.DISBURSEMENT_FAILED, now, events=[event])
        self._relay.nudge()


def current_caller_has_subject() -> bool:
    """Whether this task acts for a user (the request path) or as this context alone."""
    caller = caller_var.get()
    return caller is not None and caller.has_subject


async def _never(caller: object, customer_id: str) -> bool:
    """Loans are not shown to relationship managers through this context yet."""
    return False
