"""gRPC servicer of the lending context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

from grpc import aio

from common.batch.runner import COMPLETED, BatchProgress
from common.clock import Clock
from common.di import og_component
from common.filtering import parse_filter
from common.grpc.convert import idempotency_key, milliseconds, timestamp
from common.grpc.gates import gated
from common.money import CURRENCY_EXPONENTS, Money
from common.pagination import PageTokens
from common.saga.log import SagaRecord
from common.saga.operator import FILTER_FIELDS, SagaRun
from common.security.context import ADMIN
from common.validation import Violations
from kernel.convert import date_of, date_pb, money_pb, requested_money
from kernel.interest import BANKS_DAY
from ogpgy.lending.v1 import lending_service_pb2 as pb
from ogpgy.lending.v1 import lending_service_pb2_grpc as pb_grpc
from services.lending.domain import Loan, LoanView, Repayment, ScheduledInstallment, parse_rate, validate_terms
from services.lending.messages import LOAN_STATUS, REPAYMENT_KIND, REPAYMENT_STATUS
from services.lending.operations import OperatorUseCases, saga_amount
from services.lending.repository import ARREARS_FIELDS
from services.lending.service import LendingUseCases
from services.lending.servicing import Allocation


def loan_pb(view: Loan | LoanView, saga: SagaRecord | None) -> pb.Loan:
    loan = view.loan if isinstance(view, LoanView) else view
    message = pb.Loan(
        loan_id=loan.loan_id,
        customer_id=loan.customer_id,
        account_id=loan.account_id,
        principal=money_pb(loan.principal),
        term_months=loan.term_months,
        annual_interest_rate=loan.annual_rate,
        status=LOAN_STATUS.pb(loan.status),
        create_time=timestamp(loan.created_at),
        applied_by=loan.applied_by,
        first_approver=loan.first_approver,
    )
    if loan.installment_minor is not None:
        message.installment_amount.CopyFrom(money_pb(Money(loan.principal.currency, loan.installment_minor)))
    if loan.first_due is not None:
        message.first_due_date.CopyFrom(date_pb(loan.first_due))
    if isinstance(view, LoanView) and view.position is not None:
        p, currency = view.position, loan.principal.currency
        message.outstanding_principal.CopyFrom(money_pb(Money(currency, p.outstanding_principal)))
        message.overdue_amount.CopyFrom(money_pb(Money(currency, p.overdue_minor)))
        message.days_in_arrears = p.days_in_arrears
        if p.next_due_date is not None:
            message.next_due_date.CopyFrom(date_pb(p.next_due_date))
    if saga is not None:
        message.saga_status = pb.SagaStatus.Value(f"SAGA_STATUS_{saga.status}")
        message.saga_steps.extend(steps_pb(saga))
    return message


def steps_pb(saga: SagaRecord) -> list[pb.SagaStep]:
    return [
        pb.SagaStep(name=step.name, state=step.state, attempts=step.attempts, last_error=step.last_error)
        for _, step in sorted(saga.steps.items())
    ]


def saga_pb(run: SagaRun) -> pb.Saga:
    record = run.record
    message = pb.Saga(
        saga_id=record.saga_id,
        saga_type=record.saga_type,
        status=pb.SagaStatus.Value(f"SAGA_STATUS_{record.status}"),
        error=record.error,
        steps=steps_pb(record),
        create_time=timestamp(run.created_at),
        update_time=timestamp(run.updated_at),
        loan_id=record.payload.get("loan_id", ""),
        pending_action=run.pending_action,
        first_approver=run.first_approver,
    )
    amount = saga_amount(record)
    if amount is not None:
        message.amount.CopyFrom(money_pb(amount))
    return message


def installment_pb(scheduled: ScheduledInstallment) -> pb.Installment:
    i, state, currency = scheduled.installment, scheduled.state, scheduled.currency
    message = pb.Installment(
        number=i.number,
        due_date=date_pb(i.due_date),
        principal=money_pb(Money(currency, i.principal_minor)),
        interest=money_pb(Money(currency, i.interest_minor)),
        total=money_pb(Money(currency, i.total_minor)),
        principal_after=money_pb(Money(currency, scheduled.principal_after_minor)),
        paid=money_pb(Money(currency, state.paid_penalty + state.paid_interest + state.paid_principal)),
        late_fee=money_pb(Money(currency, state.penalty)),
        waived_interest=money_pb(Money(currency, state.waived_interest)),
        owed=money_pb(Money(currency, state.owed)),
    )
    if state.overdue_since is not None:
        message.overdue_since.CopyFrom(date_pb(state.overdue_since))
    return message


def repayment_pb(r: Repayment) -> pb.Repayment:
    a, currency = r.allocation, r.amount.currency
    return pb.Repayment(
        repayment_id=r.repayment_id,
        loan_id=r.loan_id,
        kind=REPAYMENT_KIND.pb(r.kind),
        status=REPAYMENT_STATUS.pb(r.status),
        amount=money_pb(r.amount),
        late_fees=money_pb(Money(currency, a.penalty)),
        interest=money_pb(Money(currency, a.interest)),
        principal=money_pb(Money(currency, a.principal)),
        waived_interest=money_pb(Money(currency, sum(p.waived_interest for p in a.parts))),
        create_time=timestamp(r.created_at),
    )


def quote_pb(loan: Loan, quote: Allocation, day: date) -> pb.PayoffQuote:
    currency = loan.principal.currency
    return pb.PayoffQuote(
        loan_id=loan.loan_id,
        as_of=date_pb(day),
        amount=money_pb(Money(currency, quote.total)),
        late_fees=money_pb(Money(currency, quote.penalty)),
        interest=money_pb(Money(currency, quote.interest)),
        principal=money_pb(Money(currency, quote.principal)),
        waived_interest=money_pb(Money(currency, sum(p.waived_interest for p in quote.parts))),
    )


def run_pb(p: BatchProgress, currency: str) -> pb.CollectionRun:
    return pb.CollectionRun(
        business_date=date_pb(date.fromisoformat(p.run_key[:10])),
        status=pb.COLLECTION_RUN_STATUS_COMPLETED if p.status == COMPLETED else pb.COLLECTION_RUN_STATUS_RUNNING,
        processed=p.processed,
        total=p.total,
        collected=money_pb(Money(currency, p.amount_minor)),
        duration=milliseconds(p.elapsed_ms),
        start_time=timestamp(p.started_at),
    )


def _payment(v: Violations, request: pb.RepayLoanRequest | pb.PayOffLoanRequest) -> Money | None:
    amount = requested_money(v, request.amount, "amount")
    v.raise_if_any()
    return amount


@og_component()
class LendingApi(pb_grpc.LendingServiceServicer):
    """ogpgy.lending.v1.LendingService."""

    def __init__(self, service: LendingUseCases, operators: OperatorUseCases, pages: PageTokens, clock: Clock) -> None:
        self._service = service
        self._operators = operators
        self._pages = pages
        self._clock = clock

    async def ApplyForLoan(self, request: pb.ApplyForLoanRequest, context: aio.ServicerContext) -> pb.ApplyForLoanResponse:
        v = Violations()
        principal = requested_money(v, request.principal, "principal")
        validate_terms(v, principal, request.term_months)
        loan = await self._service.apply(
            request.customer_id,
            request.account_id,
            v.valid(principal),
            request.term_months,
            idempotency_key(request, "ApplyForLoan"),
        )
        return pb.ApplyForLoanResponse(loan=loan_pb(loan, None))

    @gated(ADMIN, action="approve loans")
    async def ApproveLoan(self, request: pb.ApproveLoanRequest, context: aio.ServicerContext) -> pb.ApproveLoanResponse:
        v = Violations()
        parse_rate(v, request.annual_interest_rate)
        v.raise_if_any()
        loan = await self._service.approve(request.loan_id, request.annual_interest_rate, idempotency_key(request, "ApproveLoan"))
        return pb.ApproveLoanResponse(loan=loan_pb(loan, None))

    @gated(ADMIN, action="disburse loans")
    async def DisburseLoan(self, request: pb.DisburseLoanRequest, context: aio.ServicerContext) -> pb.DisburseLoanResponse:
        loan, saga = await self._service.disburse(request.loan_id, idempotency_key(request, "DisburseLoan"))
        return pb.DisburseLoanResponse(loan=loan_pb(loan, saga))

    async def GetLoan(self, request: pb.GetLoanRequest, context: aio.ServicerContext) -> pb.GetLoanResponse:
        return pb.GetLoanResponse(loan=loan_pb(*await self._service.view(request.loan_id)))

    async def ListInstallments(
        self, request: pb.ListInstallmentsRequest, context: aio.ServicerContext
    ) -> pb.ListInstallmentsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("installments", request.loan_id))
        v.raise_if_any()
        installments, token = await self._service.installments(request.loan_id, page)
        return pb.ListInstallmentsResponse(installments=[installment_pb(i) for i in installments], next_page_token=token)

    async def ListLoans(self, request: pb.ListLoansRequest, context: aio.ServicerContext) -> pb.ListLoansResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("loans", request.customer_id))
        v.raise_if_any()
        loans, token = await self._service.loans_of(request.customer_id, page)
        return pb.ListLoansResponse(loans=[loan_pb(loan, saga) for loan, saga in loans], next_page_token=token)

    async def RepayLoan(self, request: pb.RepayLoanRequest, context: aio.ServicerContext) -> pb.RepayLoanResponse:
        v = Violations()
        amount = v.valid(_payment(v, request))
        repayment, view = await self._service.repay(request.loan_id, amount, idempotency_key(request, "RepayLoan"))
        return pb.RepayLoanResponse(repayment=repayment_pb(repayment), loan=loan_pb(view, None))

    async def GetPayoffQuote(self, request: pb.GetPayoffQuoteRequest, context: aio.ServicerContext) -> pb.GetPayoffQuoteResponse:
        return pb.GetPayoffQuoteResponse(quote=quote_pb(*await self._service.quote(request.loan_id)))

    async def PayOffLoan(self, request: pb.PayOffLoanRequest, context: aio.ServicerContext) -> pb.PayOffLoanResponse:
        v = Violations()
        amount = v.valid(_payment(v, request))
        repayment, view = await self._service.pay_off(request.loan_id, amount, idempotency_key(request, "PayOffLoan"))
        return pb.PayOffLoanResponse(repayment=repayment_pb(repayment), loan=loan_pb(view, None))

    async def ListRepayments(self, request: pb.ListRepaymentsRequest, context: aio.ServicerContext) -> pb.ListRepaymentsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("repayments", request.loan_id))
        v.raise_if_any()
        repayments, token = await self._service.repayments(request.loan_id, page)
        return pb.ListRepaymentsResponse(repayments=[repayment_pb(r) for r in repayments], next_page_token=token)

    @gated(ADMIN, action="run the loan collection", or_started_by=BANKS_DAY)
    async def RunCollection(
        self, request: pb.RunCollectionRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.RunCollectionResponse]:
        v = Violations()
        day = date_of(request.business_date)
        v.check(day is not None, "business_date", "required: a valid calendar date")
        today = self._clock.today()
        v.check(day is None or day <= today, "business_date", f"must not be after today ({today.isoformat()})")
        v.check(request.currency_code in CURRENCY_EXPONENTS, "currency_code", "required: a supported currency")
        key = idempotency_key(request, "RunCollection")
        async for progress in self._service.collect(v.valid(day), request.currency_code, key):
            yield pb.RunCollectionResponse(run=run_pb(progress, request.currency_code))

    @gated(ADMIN, action="list sagas")
    async def ListSagas(self, request: pb.ListSagasRequest, context: aio.ServicerContext) -> pb.ListSagasResponse:
        v = Violations()
        where = parse_filter(v, request.filter, FILTER_FIELDS)
        page = self._pages.request(v, request.page_size, request.page_token, ("sagas", where.text))
        v.raise_if_any()
        runs, token = await self._operators.sagas(where, page)
        return pb.ListSagasResponse(sagas=[saga_pb(run) for run in runs], next_page_token=token)

    @gated(ADMIN, action="retry sagas")
    async def RetrySaga(self, request: pb.RetrySagaRequest, context: aio.ServicerContext) -> pb.RetrySagaResponse:
        run = await self._operators.retry(request.saga_id, request.reason.strip(), idempotency_key(request, "RetrySaga"))
        return pb.RetrySagaResponse(saga=saga_pb(run))

    @gated(ADMIN, action="compensate sagas")
    async def CompensateSaga(self, request: pb.CompensateSagaRequest, context: aio.ServicerContext) -> pb.CompensateSagaResponse:
        key = idempotency_key(request, "CompensateSaga")
        run = await self._operators.compensate(request.saga_id, request.reason.strip(), key)
        return pb.CompensateSagaResponse(saga=saga_pb(run))

    @gated(ADMIN, action="list loans in arrears")
    async def ListLoansInArrears(
        self, request: pb.ListLoansInArrearsRequest, context: aio.ServicerContext
    ) -> pb.ListLoansInArrearsResponse:
        v = Violations()
        where = parse_filter(v, request.filter, ARREARS_FIELDS)
        page = self._pages.request(v, request.page_size, request.page_token, ("arrears", where.text))
        v.raise_if_any()
        views, token = await self._operators.arrears(where, page)
        return pb.ListLoansInArrearsResponse(loans=[loan_pb(view, None) for view in views], next_page_token=token)
