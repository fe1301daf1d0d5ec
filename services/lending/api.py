"""gRPC servicer of the lending context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from grpc import aio

from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.money import Money
from common.pagination import PageTokens
from common.saga.log import SagaRecord
from common.validation import Violations, check_id, check_request_id
from kernel.convert import date_pb, money_pb, requested_money
from ogpgy.lending.v1 import lending_service_pb2 as pb
from ogpgy.lending.v1 import lending_service_pb2_grpc as pb_grpc
from services.lending.adapters import LOAN_STATUS
from services.lending.domain import Loan, ScheduledInstallment, parse_rate, validate_terms
from services.lending.service import LendingUseCases


def loan_pb(loan: Loan, saga: SagaRecord | None) -> pb.Loan:
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
    if saga is not None:
        message.saga_status = pb.SagaStatus.Value(f"SAGA_STATUS_{saga.status}")
        for index in sorted(saga.steps):
            step = saga.steps[index]
            message.saga_steps.append(
                pb.SagaStep(name=step.name, state=step.state, attempts=step.attempts, last_error=step.last_error)
            )
    return message


def installment_pb(scheduled: ScheduledInstallment) -> pb.Installment:
    i, currency = scheduled.installment, scheduled.currency
    return pb.Installment(
        number=i.number,
        due_date=date_pb(i.due_date),
        principal=money_pb(Money(currency, i.principal_minor)),
        interest=money_pb(Money(currency, i.interest_minor)),
        total=money_pb(Money(currency, i.total_minor)),
        principal_after=money_pb(Money(currency, scheduled.principal_after_minor)),
    )


def _loan_id(v: Violations, loan_id: str) -> None:
    check_id(v, loan_id, "loan_id", "lon")


@og_component()
class LendingApi(pb_grpc.LendingServiceServicer):
    """ogpgy.lending.v1.LendingService."""

    def __init__(self, service: LendingUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    async def ApplyForLoan(self, request: pb.ApplyForLoanRequest, context: aio.ServicerContext) -> pb.ApplyForLoanResponse:
        v = Violations()
        principal = requested_money(v, request.principal, "principal")
        check_request_id(v, request.request_id)
        check_id(v, request.customer_id, "customer_id", "cus")
        check_id(v, request.account_id, "account_id", "acc")
        validate_terms(v, principal, request.term_months)
        loan = await self._service.apply(
            request.customer_id,
            request.account_id,
            v.valid(principal),
            request.term_months,
            idempotency_key(request, "ApplyForLoan"),
        )
        return pb.ApplyForLoanResponse(loan=loan_pb(loan, None))

    async def ApproveLoan(self, request: pb.ApproveLoanRequest, context: aio.ServicerContext) -> pb.ApproveLoanResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        _loan_id(v, request.loan_id)
        parse_rate(v, request.annual_interest_rate)
        v.raise_if_any()
        loan = await self._service.approve(request.loan_id, request.annual_interest_rate, idempotency_key(request, "ApproveLoan"))
        return pb.ApproveLoanResponse(loan=loan_pb(loan, None))

    async def DisburseLoan(self, request: pb.DisburseLoanRequest, context: aio.ServicerContext) -> pb.DisburseLoanResponse:
        v = Violations()
        check_request_id(v, request.request_id)
        _loan_id(v, request.loan_id)
        v.raise_if_any()
        loan, saga = await self._service.disburse(request.loan_id, idempotency_key(request, "DisburseLoan"))
        return pb.DisburseLoanResponse(loan=loan_pb(loan, saga))

    async def GetLoan(self, request: pb.GetLoanRequest, context: aio.ServicerContext) -> pb.GetLoanResponse:
        v = Violations()
        _loan_id(v, request.loan_id)
        v.raise_if_any()
        return pb.GetLoanResponse(loan=loan_pb(*await self._service.get_with_saga(request.loan_id)))

    async def ListInstallments(
        self, request: pb.ListInstallmentsRequest, context: aio.ServicerContext
    ) -> pb.ListInstallmentsResponse:
        v = Violations()
        _loan_id(v, request.loan_id)
        page = self._pages.request(v, request.page_size, request.page_token, ("installments", request.loan_id))
        v.raise_if_any()
        installments, token = await self._service.installments(request.loan_id, page)
        return pb.ListInstallmentsResponse(installments=[installment_pb(i) for i in installments], next_page_token=token)

    async def ListLoans(self, request: pb.ListLoansRequest, context: aio.ServicerContext) -> pb.ListLoansResponse:
        v = Violations()
        check_id(v, request.customer_id, "customer_id", "cus")
        page = self._pages.request(v, request.page_size, request.page_token, ("loans", request.customer_id))
        v.raise_if_any()
        loans, token = await self._service.loans_of(request.customer_id, page)
        return pb.ListLoansResponse(loans=[loan_pb(loan, saga) for loan, saga in loans], next_page_token=token)
