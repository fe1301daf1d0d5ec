"""The lending context's own terms as its contract spells them: its enums and the events it
publishes. Below the api, the use cases and the repository alike, and above the domain only."""

from __future__ import annotations

from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from kernel.convert import ProtoEnum, date_pb, money_pb
from ogpgy.lending.v1 import events_pb2
from ogpgy.lending.v1 import lending_service_pb2 as pb
from services.lending.domain import (
    InstallmentOverdue,
    LoanDisbursed,
    LoanDisbursementFailed,
    LoanPaidOff,
    LoanRepaid,
    LoanStatus,
    RepaymentKind,
    RepaymentStatus,
)

LOAN_STATUS = ProtoEnum(LoanStatus, pb.LoanStatus, "LOAN_STATUS_")
REPAYMENT_KIND = ProtoEnum(RepaymentKind, pb.RepaymentKind, "REPAYMENT_KIND_")
REPAYMENT_STATUS = ProtoEnum(RepaymentStatus, pb.RepaymentStatus, "REPAYMENT_STATUS_")


OUTGOING = Outgoing()
OUTGOING.route(
    LoanDisbursed,
    events_pb2.LoanDisbursed,
    lambda e: events_pb2.LoanDisbursed(
        loan_id=e.loan_id,
        customer_id=e.customer_id,
        account_id=e.account_id,
        principal=money_pb(e.principal),
        disburse_time=timestamp(e.at),
    ),
)
OUTGOING.route(
    LoanDisbursementFailed,
    events_pb2.LoanDisbursementFailed,
    lambda e: events_pb2.LoanDisbursementFailed(
        loan_id=e.loan_id, customer_id=e.customer_id, reason=e.reason, fail_time=timestamp(e.at)
    ),
)
OUTGOING.route(
    LoanRepaid,
    events_pb2.LoanRepaid,
    lambda e: events_pb2.LoanRepaid(
        loan_id=e.loan_id,
        customer_id=e.customer_id,
        account_id=e.account_id,
        repayment_id=e.repayment_id,
        amount=money_pb(e.amount),
        principal=money_pb(e.principal),
        interest=money_pb(e.interest),
        late_fees=money_pb(e.late_fees),
        outstanding_principal=money_pb(e.outstanding_principal),
        repay_time=timestamp(e.at),
    ),
)
OUTGOING.route(
    InstallmentOverdue,
    events_pb2.InstallmentOverdue,
    lambda e: events_pb2.InstallmentOverdue(
        loan_id=e.loan_id,
        customer_id=e.customer_id,
        installment_number=e.number,
        due_date=date_pb(e.due_date),
        amount_owed=money_pb(e.owed),
        late_fee=money_pb(e.late_fee),
        detect_time=timestamp(e.at),
    ),
)
OUTGOING.route(
    LoanPaidOff,
    events_pb2.LoanPaidOff,
    lambda e: events_pb2.LoanPaidOff(loan_id=e.loan_id, customer_id=e.customer_id, paid_off_time=timestamp(e.at)),
)
