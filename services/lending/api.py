"""gRPC servicer of the lending context."""

from __future__ import annotations

from grpc import aio

from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.money import parse_money
from common.saga.log import SagaRecord
from common.validation import Violations
from ogpgy.lending.v1 import lending_service_pb2 as pb
from ogpgy.lending.v1 import lending_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import money_pb2
from services.lending.domain import Loan
from services.lending.service import LendingService


def loan_pb(loan: Loan, saga: SagaRecord | None) -> pb.Loan:
    message = pb.Loan(
        loan_id=loan.loan_id,
        customer_id=loan.customer_id,
        account_id=loan.account_id,
        principal=money_pb2.Money(currency_code=loan.principal.currency, amount=loan.principal.amount),
        term_months=loan.term_months,
        annual_interest_rate=loan.annual_rate,
        status=pb.LoanStatus.Value(f"LOAN_STATUS_{loan.status.value}"),
        create_time=timestamp(loan.created_at),
    )
    if saga is not None:
        message.saga_status = pb.SagaStatus.Value(f"SAGA_STATUS_{saga.status}")
        for index in sorted(saga.steps):
            step = saga.steps[index]
            message.saga_steps.append(
                pb.SagaStep(name=step.name, state=step.state, attempts=step.attempts, last_error=step.last_error)
            )
    return message


@og_component()
class LendingApi(pb_grpc.LendingServiceServicer):
    """ogpgy.lending.v1.LendingService."""

    def __init__(self, service: LendingService) -> None:
        self._service = service

    async def ApplyForLoan(self, request: pb.ApplyForLoanRequest, context: aio.ServicerContext) -> pb.ApplyForLoanResponse:
        v = Violations()
        principal = parse_money(v, request.principal.currency_code, request.principal.amount, "principal")
        loan = await self._service.apply(
            request.customer_id, request.account_id, principal, request.term_months, v, idempotency_key(request, "ApplyForLoan")
        )
        return pb.ApplyForLoanResponse(loan=loan_pb(loan, None))

    async def ApproveLoan(self, request: pb.ApproveLoanRequest, context: aio.ServicerContext) -> pb.ApproveLoanResponse:
        loan = await self._service.approve(request.loan_id, request.annual_interest_rate, idempotency_key(request, "ApproveLoan"))
        return pb.ApproveLoanResponse(loan=loan_pb(loan, None))

    async def DisburseLoan(self, request: pb.DisburseLoanRequest, context: aio.ServicerContext) -> pb.DisburseLoanResponse:
        loan, saga = await self._service.disburse(request.loan_id, idempotency_key(request, "DisburseLoan"))
        return pb.DisburseLoanResponse(loan=loan_pb(loan, saga))

    async def GetLoan(self, request: pb.GetLoanRequest, context: aio.ServicerContext) -> pb.GetLoanResponse:
        return pb.GetLoanResponse(loan=loan_pb(*await self._service.get_with_saga(request.loan_id)))

    async def ListLoans(self, request: pb.ListLoansRequest, context: aio.ServicerContext) -> pb.ListLoansResponse:
        loans, token = await self._service.list(request.customer_id, request.page_size, request.page_token)
        return pb.ListLoansResponse(loans=[loan_pb(loan, saga) for loan, saga in loans], next_page_token=token)
