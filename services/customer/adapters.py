"""The customer context's side of its contracts: the identity context behind the Users port, and
its events as the messages it publishes."""

from __future__ import annotations

from common.di import BaseComponent, og_component
from common.events.outgoing import Outgoing
from common.grpc.convert import timestamp
from common.grpc.remote import call
from kernel.convert import ProtoEnum
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import events_pb2
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from services.customer.domain import CustomerKycReviewed, CustomerOnboarded, CustomerUpdated, KycStatus
from services.customer.ports import Users

IDENTITY_CALL_TIMEOUT = 5.0
KYC_STATUS = ProtoEnum(KycStatus, pb.KycStatus, "KYC_STATUS_")


@og_component()
class IdentityUsers(BaseComponent, Users):
    """Users, as the identity context answers GetUser (with this context's authority: a lookup)."""

    def __init__(self, identity: IdentityServiceStub) -> None:
        self._identity = identity

    async def roles_of(self, user_id: str) -> frozenset[str]:
        answer = await call(
            self._identity.GetUser,
            ipb.GetUserRequest(user_id=user_id),
            within=IDENTITY_CALL_TIMEOUT,
            unavailable="IDENTITY_UNAVAILABLE",
            silence="cannot check the user",
        )
        return frozenset(ipb.Role.Name(role).removeprefix("ROLE_").lower() for role in answer.user.roles)


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
