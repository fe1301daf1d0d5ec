"""gRPC servicer of the payment context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from datetime import datetime

from grpc import aio

from common.di import og_component
from common.filtering import FilterField, Kind, parse_filter
from common.grpc.convert import idempotency_key, timestamp
from common.grpc.gates import gated
from common.money import CURRENCY_EXPONENTS
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.validation import Violations
from kernel.convert import money_pb, requested_money
from ogpgy.payment.v1 import payment_service_pb2 as pb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc
from services.payment.domain import Beneficiary, Payment, PaymentStatus, Reconciliation, validate_beneficiary
from services.payment.messages import PAYMENT_STATUS
from services.payment.operations import PaymentOperations
from services.payment.service import PaymentUseCases

PAYMENT_FILTER = (
    FilterField("status", "status", Kind.ENUM, {s.value: s.value for s in PaymentStatus}),
    FilterField("currency_code", "currency", Kind.TEXT),
    FilterField("amount_minor", "amount_minor", Kind.INTEGER),
    FilterField("create_time", "created_epoch", Kind.TIMESTAMP, stored=datetime.timestamp),
    FilterField("update_time", "updated_at", Kind.TIMESTAMP),
    FilterField("debtor_account_id", "debtor_account_id", Kind.TEXT),
)


def payment_pb(p: Payment) -> pb.Payment:
    message = pb.Payment(
        payment_id=p.payment_id,
        debtor_account_id=p.debtor_account_id,
        amount=money_pb(p.amount),
        reference=p.reference,
        status=PAYMENT_STATUS.pb(p.status),
        failure_reason=p.failure_reason,
        transfer_id=p.transfer_id,
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
        refund_first_approver=p.refund_first_approver,
        refund_decided_by=p.refund_decided_by,
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

    def __init__(self, service: PaymentUseCases, operations: PaymentOperations, pages: PageTokens) -> None:
        self._service = service
        self._operations = operations
        self._pages = pages

    async def CreatePayment(self, request: pb.CreatePaymentRequest, context: aio.ServicerContext) -> pb.CreatePaymentResponse:
        v = Violations()
        amount = requested_money(v, request.amount, "amount")
        beneficiary = _beneficiary(request)
        validate_beneficiary(v, beneficiary, request.debtor_account_id)
        payment = await self._service.create(
            request.debtor_account_id, beneficiary, v.valid(amount), request.reference, idempotency_key(request, "CreatePayment")
        )
        return pb.CreatePaymentResponse(payment=payment_pb(payment))

    async def GetPayment(self, request: pb.GetPaymentRequest, context: aio.ServicerContext) -> pb.GetPaymentResponse:
        return pb.GetPaymentResponse(payment=payment_pb(await self._service.get(request.payment_id)))

    async def ListPayments(self, request: pb.ListPaymentsRequest, context: aio.ServicerContext) -> pb.ListPaymentsResponse:
        v = Violations()
        matching = parse_filter(v, request.filter, PAYMENT_FILTER)
        query = ("payments", request.debtor_account_id, matching.text)
        page = self._pages.request(v, request.page_size, request.page_token, query)
        v.raise_if_any()
        payments, token = await self._service.payments_of(request.debtor_account_id, matching, page)
        return pb.ListPaymentsResponse(payments=[payment_pb(p) for p in payments], next_page_token=token)

    @gated(ADMIN, action="reconcile with the payment network")
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

    @gated(ADMIN, action="retry payments")
    async def RetryPayment(self, request: pb.RetryPaymentRequest, context: aio.ServicerContext) -> pb.RetryPaymentResponse:
        key = idempotency_key(request, "RetryPayment")
        return pb.RetryPaymentResponse(payment=payment_pb(await self._operations.retry(request.payment_id, request.reason, key)))

    @gated(ADMIN, action="refund payments")
    async def RefundPayment(self, request: pb.RefundPaymentRequest, context: aio.ServicerContext) -> pb.RefundPaymentResponse:
        key = idempotency_key(request, "RefundPayment")
        return pb.RefundPaymentResponse(
            payment=payment_pb(await self._operations.refund(request.payment_id, request.reason, key))
        )
