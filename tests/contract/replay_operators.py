"""The operators' state-changing RPCs in the replay suite: each acts on stuck work it finds
(a payment or a saga stopped for an operator), and each replays as it first answered."""

from __future__ import annotations

import itertools
from typing import Any

from common import faults
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.payment.repository import PaymentUnit, PaymentUnits
from services.velocitypay.simulator import faults_pb
from tests.bank_helpers import eur
from tests.contract.replay_world import Case, Refused, ReplayWorld, Sent, rid
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

PAYEE_IBAN = "DE89370400440532013000"
_ids = itertools.count()


async def stuck_payment(w: ReplayWorld) -> str:
    """Alice's payment to another bank, stopped for an operator with its funds held: queued while
    the network is down, then marked as the bank marks one the network rejected and whose hold the
    ledger would not release (done in its database: no request of a user leads there)."""
    control, payments = vgrpc.SimulatorControlServiceStub(w.channel), pgrpc.PaymentServiceStub(w.channel)
    admin = await w.metadata(w.admin)
    await control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)), metadata=admin)
    try:
        request = ppb.CreatePaymentRequest(
            request_id=f"rw-stuck-{next(_ids)}",
            debtor_account_id=w.alice_account,
            external=ppb.ExternalBeneficiary(iban=PAYEE_IBAN, name="Max Muster"),
            amount=eur("1.00"),
        )
        payment = (await payments.CreatePayment(request, metadata=await w.metadata(w.alice))).payment
        assert payment.status == ppb.PAYMENT_STATUS_QUEUED, payment

        async def stop(uow: PaymentUnit) -> int:
            return await uow.tx.execute(
                "UPDATE payments SET status = 'NEEDS_OPERATOR', failure_reason = 'NETWORK_REJECTED; RELEASE_REFUSED_PROBE'"
                " WHERE payment_id = ? AND status = 'QUEUED'",
                payment.payment_id,
            )

        assert await w.bank.contexts["payment"].resolve(PaymentUnits).write(stop) == 1
    finally:
        await control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb()), metadata=admin)
    return payment.payment_id


async def _completed_payment(w: ReplayWorld) -> str:
    request = ppb.CreatePaymentRequest(
        request_id=f"rw-done-{next(_ids)}",
        debtor_account_id=w.alice_account,
        internal=ppb.InternalBeneficiary(account_id=w.bob_account),
        amount=eur("1.00"),
    )
    payments = pgrpc.PaymentServiceStub(w.channel)
    return (await payments.CreatePayment(request, metadata=await w.metadata(w.alice))).payment.payment_id


def _payment_id(r: Any) -> str:
    return str(r.payment.payment_id)


def _status(r: Any) -> str:
    return ppb.PaymentStatus.Name(r.payment.status)


async def _retry(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, ppb.RetryPaymentRequest(request_id=rid(tag), payment_id=await stuck_payment(w), reason="replayed"))


async def _retry_completed(w: ReplayWorld, tag: str) -> Refused:
    request = ppb.RetryPaymentRequest(request_id=rid(tag), payment_id=await _completed_payment(w), reason="replayed")
    return Refused(Sent(w.admin, request), "PAYMENT_NOT_NEEDS_OPERATOR", final="a completed payment stays completed")


async def _refund(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, ppb.RefundPaymentRequest(request_id=rid(tag), payment_id=await stuck_payment(w), reason="replayed"))


async def _refund_completed(w: ReplayWorld, tag: str) -> Refused:
    request = ppb.RefundPaymentRequest(request_id=rid(tag), payment_id=await _completed_payment(w), reason="replayed")
    return Refused(Sent(w.admin, request), "PAYMENT_NOT_NEEDS_OPERATOR", final="a completed payment stays completed")


async def _stopped_saga(w: ReplayWorld, tag: str) -> str:
    """The saga of an approved loan stopped FAILED_NEEDS_OPERATOR: its last step failed, then the
    reversal of its transfer kept failing (the faults disarmed again at once)."""
    loan, _ = await w.loan(lpb.LOAN_STATUS_APPROVED)
    points = ("lending.mark_disbursed", "lending.reverse")
    faults.arm(*points)
    try:
        request = lpb.DisburseLoanRequest(request_id=rid(f"{tag}-stop"), loan_id=loan)
        stopped = (await w.lending.DisburseLoan(request, metadata=await w.metadata(w.admin))).loan
    finally:
        faults.disarm(*points)
    assert stopped.saga_status == lpb.SAGA_STATUS_FAILED_NEEDS_OPERATOR, stopped
    return f"sag-{loan}"


async def _completed_saga(w: ReplayWorld) -> str:
    loan, _ = await w.loan(lpb.LOAN_STATUS_DISBURSED)
    return f"sag-{loan}"


def _saga_id(r: Any) -> str:
    return str(r.saga.saga_id)


def _saga_status(r: Any) -> str:
    return lpb.SagaStatus.Name(r.saga.status)


async def _retry_saga(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, lpb.RetrySagaRequest(request_id=rid(tag), saga_id=await _stopped_saga(w, tag), reason="replayed"))


async def _retry_saga_completed(w: ReplayWorld, tag: str) -> Refused:
    request = lpb.RetrySagaRequest(request_id=rid(tag), saga_id=await _completed_saga(w), reason="replayed")
    return Refused(Sent(w.admin, request), "SAGA_NOT_FAILED", final="a completed saga never stops again")


async def _compensate_saga(w: ReplayWorld, tag: str) -> Sent:
    saga_id = await _stopped_saga(w, tag)  # 100.00: below the operators' four-eyes amount, one admin compensates
    return Sent(w.admin, lpb.CompensateSagaRequest(request_id=rid(tag), saga_id=saga_id, reason="replayed"))


async def _compensate_saga_completed(w: ReplayWorld, tag: str) -> Refused:
    request = lpb.CompensateSagaRequest(request_id=rid(tag), saga_id=await _completed_saga(w), reason="replayed")
    return Refused(Sent(w.admin, request), "SAGA_NOT_FAILED", final="a completed saga never stops again")


OPERATOR_CASES: dict[str, Case] = {
    "RetrySaga": Case(_saga_id, _retry_saga, (_retry_saga_completed,), outcome=_saga_status),
    "CompensateSaga": Case(_saga_id, _compensate_saga, (_compensate_saga_completed,), outcome=_saga_status),
    "RetryPayment": Case(_payment_id, _retry, (_retry_completed,), outcome=_status),
    "RefundPayment": Case(_payment_id, _refund, (_refund_completed,), outcome=_status),
}
