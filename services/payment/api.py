"""gRPC servicer of the payment context."""

from __future__ import annotations

from grpc import aio

from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.money import CURRENCY_EXPONENTS, parse_money
from common.validation import Violations
from ogpgy.payment.v1 import payment_service_pb2 as pb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import money_pb2
from services.payment.domain import Beneficiary, Payment, Reconciliation
from services.payment.service import PaymentApplicationService


def payment_pb(p: Payment) -> pb.Payment:
    message = pb.Payment(
        payment_id=p.payment_id,
        debtor_account_id=p.debtor_account_id,
        amount=money_pb2.Money(currency_code=p.amount.currency, amount=p.amount.amount),
        reference=p.reference,
        status=pb.PaymentStatus.Value(f"PAYMENT_STATUS_{p.status.value}"),
        failure_reason=p.failure_reason,
        transfer_id=p.transfer_id,
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
    )
    if p.beneficiary.external:
        message.external.CopyFrom(pb.ExternalBeneficiary(iban=p.beneficiary.iban, name=p.beneficiary.name))
    else:
        message.internal.CopyFrom(pb.InternalBeneficiary(account_id=p.beneficiary.account_id))
    return message


def reconciliation_pb(r: Reconciliation) -> pb.ReconcileNetworkResponse:
    return pb.ReconcileNetworkResponse(
        network_settled=r.network_settled,
        booked_transfers=r.booked_transfers,
        matched=r.matched,
        in_flight=r.in_flight,
        discrepancies=[
            pb.Discrepancy(kind=d.kind, payment_id=d.payment_id, transfer_id=d.transfer_id, detail=d.detail)
            for d in r.discrepancies
        ],
        truncated=r.truncated,
    )


def _beneficiary(request: pb.CreatePaymentRequest) -> Beneficiary:
    kind = request.WhichOneof("beneficiary")
    if kind == "internal":
        return Beneficiary(account_id=request.internal.account_id)
    if kind == "external":
        return Beneficiary(iban=request.external.iban, name=request.external.name)
    return Beneficiary()


@og_component()
class PaymentApi(pb_grpc.PaymentServiceServicer):
    """ogpgy.payment.v1.PaymentService."""

    def __init__(self, service: PaymentApplicationService) -> None:
        self._service = service

    async def CreatePayment(self, request: pb.CreatePaymentRequest, context: aio.ServicerContext) -> pb.CreatePaymentResponse:
        v = Violations()
        amount = parse_money(v, request.amount.currency_code, request.amount.amount, "amount")
        payment = await self._service.create(
            request.debtor_account_id,
            _beneficiary(request),
            amount,
            request.reference,
            v,
            idempotency_key(request, "CreatePayment"),
        )
        return pb.CreatePaymentResponse(payment=payment_pb(payment))

    async def GetPayment(self, request: pb.GetPaymentRequest, context: aio.ServicerContext) -> pb.GetPaymentResponse:
        return pb.GetPaymentResponse(payment=payment_pb(await self._service.get(request.payment_id)))

    async def ListPayments(self, request: pb.ListPaymentsRequest, context: aio.ServicerContext) -> pb.ListPaymentsResponse:
        payments, token = await self._service.payments_of(request.debtor_account_id, request.page_size, request.page_token)
        return pb.ListPaymentsResponse(payments=[payment_pb(p) for p in payments], next_page_token=token)

    async def ReconcileNetwork(
        self, request: pb.ReconcileNetworkRequest, context: aio.ServicerContext
    ) -> pb.ReconcileNetworkResponse:
        v = Violations()
        v.check(
            not request.currency_code or request.currency_code in CURRENCY_EXPONENTS,
            "currency_code",
            f"empty (every currency) or one of {', '.join(sorted(CURRENCY_EXPONENTS))}",
        )
        v.raise_if_any()
        return reconciliation_pb(await self._service.reconcile(request.currency_code))
