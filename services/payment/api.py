"""gRPC servicer of the payment context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from grpc import aio

from common.di import og_component
from common.filtering import FilterField, Kind, parse_filter
from common.grpc.contract_rules import contract_violations
from common.grpc.convert import idempotency_key, timestamp
from common.grpc.gates import gated
from common.money import CURRENCY_EXPONENTS
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.validation import Violations
from kernel.convert import money_pb, requested_money
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bpb_grpc
from ogpgy.payment.v1 import payment_service_pb2 as pb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import money_pb2
from services.payment.batches import BatchUseCases
from services.payment.domain import (
    Batch,
    BatchHeader,
    BatchLine,
    Beneficiary,
    Payment,
    PaymentStatus,
    validate_batch,
    validate_beneficiary,
)
from services.payment.exports import pain002, read_pain001
from services.payment.messages import BATCH_STATUS, PAYMENT_STATUS
from services.payment.operations import PaymentOperations
from services.payment.reconciliation import Reconciliation
from services.payment.repository import StoredLine
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


def _beneficiary(request: pb.CreatePaymentRequest | bpb.PaymentBatchLine) -> Beneficiary:
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


def batch_pb(b: Batch) -> bpb.PaymentBatch:
    return bpb.PaymentBatch(
        batch_id=b.batch_id,
        debtor_account_id=b.debtor_account_id,
        status=BATCH_STATUS.pb(b.status),
        failure_reason=b.failure_reason,
        message_id=b.message_id,
        line_count=b.line_count,
        control_sum=money_pb(b.total),
        completed=b.completed,
        failed=b.failed,
        in_flight=b.in_flight,
        create_time=timestamp(b.created_at),
    )


def line_pb(line: StoredLine) -> bpb.PaymentBatchLineStatus:
    return bpb.PaymentBatchLineStatus(line_number=line.number, end_to_end_id=line.end_to_end_id, payment=payment_pb(line.payment))


def _batch_lines(v: Violations, debtor: str, batch: bpb.PaymentBatchLines) -> tuple[list[BatchLine], str]:
    """The batch's lines in domain terms and its message id, validated whole (the same for both
    forms: a pain.001 file has become `PaymentBatchLines` by then)."""
    lines: list[BatchLine] = []
    for n, line in enumerate(batch.lines):
        amount = requested_money(v, line.amount, f"lines[{n}].amount")
        if amount is not None:
            lines.append(BatchLine(n + 1, line.end_to_end_id, _beneficiary(line), amount, line.reference))
    if not v.check(bool(lines), "lines", "at least one line with a valid amount"):
        return [], ""
    control_sum = None
    if batch.control_sum:
        given = money_pb2.Money(currency_code=lines[0].amount.currency, amount=batch.control_sum)
        control_sum = requested_money(v, given, "control_sum")
    validate_batch(v, debtor, lines, BatchHeader(batch.number_of_transactions, control_sum, batch.message_id), "lines")
    return lines, batch.message_id


def _file_rules(v: Violations, batch: bpb.PaymentBatchLines) -> None:
    """The contract's field rules on the lines a pain.001 file became (a request's own lines met
    them before the handler ran): a name with control or format characters, an id too long."""
    for found in contract_violations(batch)[:_MAX_FILE_VIOLATIONS]:
        v.add(found.field, found.description, found.reason)


_MAX_FILE_VIOLATIONS = 100


@og_component()
class BulkPaymentApi(bpb_grpc.BulkPaymentServiceServicer):
    """ogpgy.payment.v1.BulkPaymentService."""

    def __init__(self, service: BatchUseCases, pages: PageTokens) -> None:
        self._service = service
        self._pages = pages

    async def SubmitPaymentBatch(
        self, request: bpb.SubmitPaymentBatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[bpb.SubmitPaymentBatchResponse]:
        v = Violations()
        batch = read_pain001(v, request.pain001) if request.WhichOneof("content") == "pain001" else request.lines
        if batch is not None and request.WhichOneof("content") == "pain001":
            _file_rules(v, batch)
        lines, message_id = _batch_lines(v, request.debtor_account_id, batch) if batch is not None else ([], "")
        v.raise_if_any()
        key = idempotency_key(request, "SubmitPaymentBatch")
        async for progress in self._service.submit(request.debtor_account_id, lines, message_id, key):
            yield bpb.SubmitPaymentBatchResponse(batch=batch_pb(progress))

    async def GetPaymentBatch(
        self, request: bpb.GetPaymentBatchRequest, context: aio.ServicerContext
    ) -> bpb.GetPaymentBatchResponse:
        return bpb.GetPaymentBatchResponse(batch=batch_pb(await self._service.get(request.batch_id)))

    async def ListPaymentBatchLines(
        self, request: bpb.ListPaymentBatchLinesRequest, context: aio.ServicerContext
    ) -> bpb.ListPaymentBatchLinesResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("batch-lines", request.batch_id))
        v.raise_if_any()
        lines, token = await self._service.lines(request.batch_id, page)
        return bpb.ListPaymentBatchLinesResponse(lines=[line_pb(line) for line in lines], next_page_token=token)

    async def GetPaymentBatchReport(
        self, request: bpb.GetPaymentBatchReportRequest, context: aio.ServicerContext
    ) -> bpb.GetPaymentBatchReportResponse:
        batch, lines, at = await self._service.report(request.batch_id)
        content = pain002(batch_pb(batch), [line_pb(line) for line in lines], at)
        return bpb.GetPaymentBatchReportResponse(
            content=content, media_type="application/xml", file_name=f"{batch.batch_id}.pain.002.xml"
        )
