"""The payment context's own terms as its contract spells them: its enums and the events it
publishes. Below the api, the use cases and the repository alike, and above the domain only."""

from __future__ import annotations

from typing import Any

from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from kernel.convert import ProtoEnum, money_pb
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import events_pb2
from ogpgy.payment.v1 import payment_service_pb2 as pb
from services.payment.domain import BatchStatus, Payment, PaymentCompleted, PaymentFailed, PaymentQueued, PaymentStatus

PAYMENT_STATUS = ProtoEnum(PaymentStatus, pb.PaymentStatus, "PAYMENT_STATUS_")
BATCH_STATUS = ProtoEnum(BatchStatus, bpb.PaymentBatchStatus, "PAYMENT_BATCH_STATUS_")


def _about(p: Payment) -> dict[str, Any]:
    """What every payment event says of its payment."""
    return {"payment_id": p.payment_id, "debtor_account_id": p.debtor_account_id, "amount": money_pb(p.amount)}


OUTGOING = Outgoing()
OUTGOING.route(
    PaymentCompleted,
    events_pb2.PaymentCompleted,
    lambda e: events_pb2.PaymentCompleted(
        **_about(e.payment), transfer_id=e.payment.transfer_id, complete_time=timestamp(e.payment.updated_at)
    ),
)
OUTGOING.route(
    PaymentFailed,
    events_pb2.PaymentFailed,
    lambda e: events_pb2.PaymentFailed(
        **_about(e.payment), reason=e.payment.failure_reason, fail_time=timestamp(e.payment.updated_at)
    ),
)
OUTGOING.route(
    PaymentQueued,
    events_pb2.PaymentQueued,
    lambda e: events_pb2.PaymentQueued(**_about(e.payment), queue_time=timestamp(e.payment.updated_at)),
)
