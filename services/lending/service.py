"""Use cases of the lending context: applying, approving (four eyes above an amount), the
disbursement saga, and servicing (repayments, payoff, the daily collection).

The disbursement saga: reserve funds on the loan book (the bank's principal receivable account)
with a hold -> record the disbursement -> move the money (capture) -> mark the loan disbursed;
compensated in reverse (release, cancel, reverse the transfer).

The saga's authority is the admin's who asked for the disbursement: the hold on the loan book is
placed with it, relayed to the account context (which makes this context the hold's owner). A saga
resumed in the background acts as this context alone: it captures, releases or reverses what its
own hold did, and where the hold's answer was lost it looks the hold up (closing the request id if
none was placed) instead of placing one: a saga that never reserved anything compensates.
Input arrives validated (api.py); each use case authorizes first. The saga's steps are in
disbursement.py.
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from common.background import Background, every
from common.batch.runner import BatchProgress, BatchRunner, ChunkResult
from common.callee import AUTHORITY, denial
from common.clock import Clock
from common.config import Settings
from common.db.base import stored
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.errors import NotFound, PermissionDenied, PreconditionFailed, Unauthenticated
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.money import Money
from common.pagination import PageRequest
from common.saga.log import SagaRecord
from common.saga.runner import SagaDefinition, SagaRunner, Step
from common.security.context import ADMIN, SecurityContext, as_itself, current_caller, service_identity
from common.security.policy import require_customer_access, require_role, unknown
from kernel.interest import BANKS_DAY
from services.lending import repaying
from services.lending.disbursement import NOT_ALLOWED, DisbursementSteps
from services.lending.domain import (
    ApprovalStep,
    Loan,
    LoanStatus,
    LoanView,
    Product,
    Repayment,
    RepaymentKind,
    RepaymentStatus,
    ScheduledInstallment,
    approval_step,
    disbursement_starts,
    require_active,
    require_currency,
)
from services.lending.ports import Accounts, Customers, Debit, DebitOutcome
from services.lending.repaying import Collected, CollectionChunk, PaymentOrder
from services.lending.repository import LendingUnit, LendingUnits
from services.lending.schedule import annuity_schedule
from services.lending.servicing import Allocation, InstallmentState, allocate, due_by, payoff, position

SAGA = "loan-disbursement"
COLLECTION_JOB = "loan-collection"
COLLECTION_CHUNK = 500  # loans per chunk: one debit call (PostCharges takes up to 500) and two transactions
COLLECTOR = service_identity("lending").principal  # whose keys the collection's debits are
PRODUCT_FILE = Path(__file__).parent / "products.toml"
STALE_AFTER_SECONDS = 30.0  # a debit's call gives up after 5 s: a repayment pending this long lost its answer
RESOLVE_EVERY_SECONDS = 5.0


@og_component()
class LendingUseCases(BaseComponent, DisbursementSteps):
    def __init__(
        self,
        units: LendingUnits,
        accounts: Accounts,
        customers: Customers,
        sagas: SagaRunner,
        batches: BatchRunner,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._batches = batches
        self._product = Product(0)
        self._four_eyes_above = dict(settings.loan_four_eyes_minor)
        self._customers = customers
        self._units = units
        self._accounts = accounts
        self._sagas = sagas
        self._clock = clock

    async def initialize(self) -> None:
        config = tomllib.loads(PRODUCT_FILE.read_text(encoding="utf-8"))
        self._product = Product(int(config["late_fee_minor"]))
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
        except AUTHORITY as refused:
            raise denial(refused, NOT_ALLOWED) from refused
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

        async def add(uow: LendingUnit) -> Loan:
            replayed = await uow.claim(key, loan.loan_id)
            if replayed is not None:
                return stored(await uow.loans.get(replayed), replayed)
            await uow.loans.add(loan)
            return loan

        return await self._units.write(add)

    async def approve(self, loan_id: str, rate: str, key: IdempotencyKey) -> Loan:
        """An admin approves; above its currency's four-eyes amount a first approval waits for a
        second admin at the same rate, neither of them the applicant. Decided on the locked loan
        (two admins at once cannot both be "the first"), once per request_id."""
        approver = require_role(ADMIN, action="approve loans").user_id
        await self.get(loan_id)
        today, now = self._clock.today(), self._clock.now()

        async def approval(uow: LendingUnit) -> None:
            async def make() -> None:  # decided on the loan as the unit locked it
                loan = stored(await uow.loans.locked(loan_id), loan_id)
                step = approval_step(loan, approver, rate, self._four_eyes_above)
                if step is ApprovalStep.FIRST:
                    waiting = replace(loan, status=LoanStatus.AWAITING_SECOND_APPROVAL, updated_at=now)
                    await uow.loans.save(waiting, {"annual_rate": rate, "first_approver": approver})
                elif step is ApprovalStep.FINAL:
                    schedule = annuity_schedule(loan.principal.minor, Decimal(rate), loan.term_months, today)
                    terms = {"annual_rate": rate, "installment_minor": schedule[0].total_minor}
                    terms["first_due_date"] = schedule[0].due_date.isoformat()
                    await uow.loans.save(replace(loan, status=LoanStatus.APPROVED, updated_at=now), terms)
                    await uow.installments.add_schedule(loan_id, schedule)

            await uow.once(key, loan_id, make, _nothing)

        await self._units.write(approval)
        return await self.get(loan_id)

    async def disburse(self, loan_id: str, key: IdempotencyKey) -> tuple[Loan, SagaRecord | None]:
        """Starts (or resumes, or just reports) the disbursement saga; returns once it ended."""
        require_role(ADMIN, action="disburse loans")
        loan = await self.get(loan_id)
        await self._units.write(_disbursing(loan_id, key, self._clock.now()))
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
        loan = await self._loan(loan_id)
        if loan is None:
            raise unknown("loan", loan_id, "read this loan")
        await require_customer_access(loan.customer_id, assigned=self._manages, action="read this loan")
        return loan

    async def installments(self, loan_id: str, request: PageRequest) -> tuple[list[ScheduledInstallment], str]:
        """The schedule of a loan the caller may read (empty before approval)."""
        loan = await self.get(loan_id)
        currency = loan.principal.currency
        page = await self._units.read(lambda uow: uow.installments.page(loan_id, currency, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)

    async def get_with_saga(self, loan_id: str) -> tuple[Loan, SagaRecord | None]:
        loan = await self.get(loan_id)
        return loan, await self._sagas.record(loan.saga_id)

    async def loans_of(self, customer_id: str, request: PageRequest) -> tuple[list[tuple[Loan, SagaRecord | None]], str]:
        await require_customer_access(customer_id, assigned=self._manages, action="list this customer's loans")
        page = await self._units.read(lambda uow: uow.loans.page(customer_id, request.after_seq, request.limit))
        if not page.items and request.after is None and not await self._customers.exists(customer_id):
            raise NotFound("customer", customer_id)  # an empty list of a customer nobody knows would hide a typo
        return [(loan, await self._sagas.record(loan.saga_id)) for loan in page.items], request.next_token(page.next_after)

    # --- servicing ------------------------------------------------------------------------------

    async def view(self, loan_id: str) -> tuple[LoanView, SagaRecord | None]:
        """A loan the caller may read, where it stands today, and its disbursement saga."""
        loan, saga = await self.get_with_saga(loan_id)
        return await self._view(loan), saga

    async def _view(self, loan: Loan) -> LoanView:
        if loan.status not in (LoanStatus.DISBURSED, LoanStatus.PAID_OFF):
            return LoanView(loan, None)
        return LoanView(loan, position(await self._states(loan.loan_id), self._clock.today()))

    async def _loan(self, loan_id: str) -> Loan | None:
        return await self._units.read(lambda uow: uow.loans.get(loan_id))

    async def _states(self, loan_id: str) -> list[InstallmentState]:
        return await self._units.read(lambda uow: uow.installments.states(loan_id))

    async def _payable(self, loan_id: str, amount: Money) -> Loan:
        """A loan the caller may pay (its customer, or an admin), in `amount`'s currency. Whether it
        is still active is decided with the payment (a retry of the payment that closed it gets its
        answer, not LOAN_NOT_ACTIVE)."""
        loan = await self._loan(loan_id)
        if loan is None:
            raise unknown("loan", loan_id, "repay this loan")
        await require_customer_access(loan.customer_id, assigned=self._manages, write=True, action="repay this loan")
        require_currency(loan, amount)
        return loan

    async def repay(self, loan_id: str, amount: Money, key: IdempotencyKey) -> tuple[Repayment, LoanView]:
        loan = await self._payable(loan_id, amount)
        today = self._clock.today()
        return await self._pay(loan, RepaymentKind.REPAYMENT, key, amount, lambda states: allocate(states, amount.minor, today))

    async def quote(self, loan_id: str) -> tuple[Loan, Allocation, date]:
        """Today's payoff of a loan the caller may read."""
        loan = await self.get(loan_id)
        require_active(loan)
        today = self._clock.today()
        return loan, payoff(await self._states(loan_id), today), today

    async def pay_off(self, loan_id: str, amount: Money, key: IdempotencyKey) -> tuple[Repayment, LoanView]:
        loan = await self._payable(loan_id, amount)
        today = self._clock.today()

        def at_quote(states: list[InstallmentState]) -> Allocation:
            quote = payoff(states, today)
            if quote.total != amount.minor:
                raise PreconditionFailed(
                    "PAYOFF_AMOUNT_CHANGED",
                    f"today's payoff amount is {Money(amount.currency, quote.total)}",
                    {"loan_id": loan_id, "payoff_amount": Money(amount.currency, quote.total).amount},
                )
            return quote

        return await self._pay(loan, RepaymentKind.PAYOFF, key, amount, at_quote)

    async def _pay(
        self,
        loan: Loan,
        kind: RepaymentKind,
        key: IdempotencyKey,
        amount: Money,
        decide: Callable[[list[InstallmentState]], Allocation],
    ) -> tuple[Repayment, LoanView]:
        now = self._clock.now()
        order = PaymentOrder(loan.loan_id, kind, key, new_id("rpy"), loan.principal.currency, now, decide, amount.minor)
        repayment = await self._units.write(lambda uow: repaying.prepare(uow, order))
        if repayment is None:
            raise PreconditionFailed("NOTHING_OWED", "nothing is owed on the loan", {"loan_id": loan.loan_id})
        if repayment.status is RepaymentStatus.PENDING:
            repayment = await self._take(loan.account_id, repayment)
        return repayment, await self._view(await self.get(loan.loan_id))

    async def _take(self, account_id: str, repayment: Repayment) -> Repayment:
        """Debits a pending repayment with the caller's authority: posted, or refused for good (the
        account's refusal is kept as the request's answer, and the debit's request id answers the
        same refusal to any retry: a debit refused once is never taken later). Refused for
        authority, see `_debit_refused`. No answer leaves it pending: a retry, or the resolver."""
        try:
            [outcome] = await self._accounts.debit([_debit(repayment, account_id)])
        except AUTHORITY as refused:
            return await self._debit_refused(repayment, refused)
        if outcome.posted:
            return await self._posted(repayment.repayment_id)
        refusal = PreconditionFailed(outcome.reason, "the loan's account cannot pay it", {"account_id": account_id})
        await self._units.write(lambda uow: repaying.refused(uow, repayment.repayment_id, refusal))
        raise refusal

    async def _debit_refused(self, repayment: Repayment, refused: Unauthenticated | PermissionDenied) -> Repayment:
        """Final only once the debit's request id is closed (`common.callee`): the account context
        judges the caller before it replays a request id, so an identical request may have been
        debited although this copy was refused (its token revoked meanwhile, a right withdrawn).
        Looked up as this context: taken, the repayment is posted. Not (the lookup closed the id:
        no copy can take it now), a right refused stays the request's answer (ACCESS_DENIED); a
        token refused cannot (a retry with a new one must be heard): the repayment is dropped, as
        the resolver drops one never debited, and the caller hears its token refused."""
        with as_itself():
            taken = await self._accounts.debit_taken(repayment.repayment_id)
        if taken:
            return await self._posted(repayment.repayment_id)
        denied = denial(refused, NOT_ALLOWED)
        if isinstance(denied, PermissionDenied):
            await self._units.write(lambda uow: repaying.refused(uow, repayment.repayment_id, denied))
        else:
            await self._units.write(lambda uow: repaying.rejected(uow, [repayment.repayment_id]))
        raise denied from refused

    async def _posted(self, repayment_id: str) -> Repayment:
        now = self._clock.now()
        return await self._units.write(lambda uow: repaying.posted(uow, repayment_id, now))

    async def repayments(self, loan_id: str, request: PageRequest) -> tuple[list[Repayment], str]:
        await self.get(loan_id)
        page = await self._units.read(lambda uow: uow.repayments.page(loan_id, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)

    async def collect(self, day: date, currency: str, key: IdempotencyKey | None = None) -> AsyncIterator[BatchProgress]:
        """Runs or resumes the collection of `day` for loans in `currency`; a completed one is
        refused (but to a replay of the request `key` that ran it).
        Each chunk debits with the authority of the admin, or of interest's scheduled close, running it."""
        require_role(ADMIN, action="run the loan collection", or_started_by=BANKS_DAY)

        def order_for(loan_id: str) -> PaymentOrder:
            key = IdempotencyKey(f"col-{loan_id[4:]}-{day:%Y%m%d}", COLLECTION_JOB, day.isoformat(), COLLECTOR)
            now = self._clock.now()
            return PaymentOrder(loan_id, RepaymentKind.COLLECTION, key, new_id("rpy"), currency, now, lambda s: due_by(s, day))

        async def chunk(cursor: str) -> ChunkResult:
            planned = CollectionChunk(currency, int(cursor or 0), COLLECTION_CHUNK, order_for)
            plan = await self._units.write(lambda uow: repaying.collection_chunk(uow, planned))
            pending = [(r, account) for r, account in plan.takes if r.status is RepaymentStatus.PENDING]
            outcomes = await self._accounts.debit([_debit(r, account) for r, account in pending]) if pending else []
            settled = [(r, _collection_outcome(o)) for (r, _), o in zip(pending, outcomes, strict=True)]
            fee, now = self._product.late_fee_minor, self._clock.now()
            await self._units.write(lambda uow: repaying.collection_settled(uow, settled, day, fee, now))
            earlier = sum(r.amount.minor for r, _ in plan.takes if r.status is RepaymentStatus.POSTED)
            collected = earlier + sum(r.amount.minor for r, outcome in settled if outcome is Collected.POSTED)
            return ChunkResult(plan.examined, collected, str(plan.last_seq), plan.done, plan.total)

        run_key = f"{day.isoformat()}-{currency}"
        async for progress in self._batches.run(
            COLLECTION_JOB, run_key, chunk, already_completed="COLLECTION_RUN_ALREADY_COMPLETED", request=key
        ):
            yield progress

    async def settle_stale(self, older_than: timedelta) -> int:
        """As this context alone: the repayments left pending longer than `older_than` (their
        debit's answer lost, nobody retried) are settled by asking whether the debit was taken;
        "no" closes its request id for good. How many were settled."""
        settled = 0
        before = self._clock.now() - older_than
        for repayment in await self._units.read(lambda uow: uow.repayments.stale_pending(before, 100)):
            await self._settle(repayment.repayment_id)
            settled += 1
        return settled

    async def _settle(self, repayment_id: str) -> None:
        """A repayment whose debit's answer was lost: posted if the debit was taken, else dropped."""
        if await self._accounts.debit_taken(repayment_id):
            await self._posted(repayment_id)
        else:
            await self._units.write(lambda uow: repaying.rejected(uow, [repayment_id]))


@og_component()
class PaymentResolver(BaseComponent):
    """Settles the repayments whose debit's answer was lost and that nobody retried, once for the
    mesh (the lease), as this context alone."""

    def __init__(self, use_cases: LendingUseCases, database: ContextDatabase) -> None:
        self._loop = Background(
            "lending-payment-resolver",
            lambda: use_cases.settle_stale(timedelta(seconds=STALE_AFTER_SECONDS)),
            every(RESOLVE_EVERY_SECONDS),
            self.logger,
            lead=lambda: database.lead("lending-payment-resolver"),
        )

    async def start(self) -> None:
        self._loop.start()

    async def shutdown(self) -> None:
        await self._loop.stop()


def _collection_outcome(outcome: DebitOutcome) -> Collected:
    """A debit refused for the account's sake (funds, a closed account) leaves the installments
    overdue; one whose request id was closed meanwhile (by the resolver, after a stall) did
    nothing, and is collected again by the next run."""
    if outcome.posted:
        return Collected.POSTED
    return Collected.VOIDED if outcome.reason == "REQUEST_VOIDED" else Collected.UNPAID


def _debit(repayment: Repayment, account_id: str) -> Debit:
    a, currency = repayment.allocation, repayment.amount.currency
    return Debit(
        repayment.repayment_id,
        account_id,
        Money(currency, a.principal),
        Money(currency, a.interest),
        Money(currency, a.penalty),
        f"loan {repayment.loan_id} {repayment.kind.value.lower()}",
    )


async def _nothing(_: str) -> None:
    """A replayed approval or disbursement start: what the key's first request did stands."""


def _disbursing(loan_id: str, key: IdempotencyKey, at: datetime) -> Callable[[LendingUnit], Awaitable[None]]:
    """The unit that starts a disbursement, once for its key, decided on the locked loan: an
    APPROVED loan moves to DISBURSING; one already disbursing (or done) is left as it is (its saga
    reports); any other is refused, and the refusal stays the request_id's answer (a replay once
    the loan is approved does not disburse it)."""

    async def start(uow: LendingUnit) -> None:
        async def make() -> None:
            loan = stored(await uow.loans.locked(loan_id), loan_id)
            if disbursement_starts(loan):
                await uow.loans.save(replace(loan, status=LoanStatus.DISBURSING, updated_at=at), {})

        await uow.once(key, loan_id, make, _nothing)

    return start
