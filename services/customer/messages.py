"""The customer context's own terms as its contract spells them: its enums and the events it
publishes. Below the api, the use cases and the repository alike, and above the domain only."""

from __future__ import annotations

from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from kernel.convert import ProtoEnum
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import events_pb2
from services.customer.domain import CustomerKycReviewed, CustomerOnboarded, CustomerUpdated, KycStatus

KYC_STATUS = ProtoEnum(KycStatus, pb.KycStatus, "KYC_STATUS_")


OUTGOING = Outgoing()
OUTGOING.route(
    CustomerOnboarded,
    events_pb2.CustomerOnboarded,
    lambda e: events_pb2.CustomerOnboarded(
        customer_id=e.customer_id, kyc_status=KYC_STATUS.pb(e.kyc_status), onboard_time=timestamp(e.at)
    ),
)
OUTGOING.route(
    CustomerUpdated,
    events_pb2.CustomerUpdated,
    lambda e: events_pb2.CustomerUpdated(
        customer_id=e.customer_id, version=e.version, changed_fields=list(e.changed_fields), update_time=timestamp(e.at)
    ),
)
OUTGOING.route(
    CustomerKycReviewed,
    events_pb2.CustomerKycReviewed,
    lambda e: events_pb2.CustomerKycReviewed(
        customer_id=e.customer_id, kyc_status=KYC_STATUS.pb(e.kyc_status), review_time=timestamp(e.at)
    ),
)
