"""gRPC servicer of the customer context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from cachetools import LRUCache
from grpc import aio

from common.clock import Clock
from common.di import og_component
from common.grpc.convert import idempotency_key, timestamp
from common.grpc.gates import gated
from common.pagination import PageTokens
from common.security.context import ADMIN
from common.validation import Violations
from kernel.convert import ProtoEnum, date_of, date_pb
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import address_pb2
from services.customer.domain import (
    Address,
    Application,
    ContactChange,
    Customer,
    DocumentType,
    IdentityDocument,
    KycReason,
    validate_application,
    validate_contact_change,
)
from services.customer.messages import KYC_STATUS
from services.customer.service import CustomerUseCases

DOCUMENT_TYPE = ProtoEnum(DocumentType, pb.DocumentType, "DOCUMENT_TYPE_")
KYC_REASON = ProtoEnum(KycReason, pb.KycRejectionReason, "KYC_REJECTION_REASON_")
_DECISIONS = {pb.KYC_DECISION_CLEAR: True, pb.KYC_DECISION_REJECT: False}  # -> clear?


def _address(msg: address_pb2.PostalAddress) -> Address:
    return Address(tuple(msg.lines), msg.city, msg.postal_code, msg.country_code)


def _application(req: pb.OnboardCustomerRequest) -> Application:
    dob = req.date_of_birth
    return Application(
        given_name=req.given_name,
        family_name=req.family_name,
        email=req.email,
        phone=req.phone,
        date_of_birth=date_of(dob) if req.HasField("date_of_birth") else None,
        document=IdentityDocument(DOCUMENT_TYPE.of(req.document.type), req.document.number, req.document.issuing_country_code)
        if req.HasField("document")
        else None,
        address=_address(req.address) if req.HasField("address") else None,
    )


def _contact_change(req: pb.UpdateCustomerRequest) -> ContactChange:
    c = req.customer
    return ContactChange(
        fields=frozenset(req.update_mask.paths),
        email=c.email,
        phone=c.phone,
        address=_address(c.address) if c.HasField("address") else None,
    )


def customer_pb(c: Customer) -> pb.Customer:
    return pb.Customer(
        customer_id=c.customer_id,
        given_name=c.given_name,
        family_name=c.family_name,
        email=c.email,
        phone=c.phone,
        date_of_birth=date_pb(c.date_of_birth) if c.date_of_birth.year > 1 else None,  # masked
        document=pb.IdentityDocument(
            type=DOCUMENT_TYPE.pb(c.document.type) if c.document.type else pb.DOCUMENT_TYPE_UNSPECIFIED,
            number=c.document.number,
            issuing_country_code=c.document.issuing_country_code,
        ),
        address=address_pb2.PostalAddress(
            lines=list(c.address.lines),
            city=c.address.city,
            postal_code=c.address.postal_code,
            country_code=c.address.country_code,
        ),
        kyc=pb.Kyc(
            status=KYC_STATUS.pb(c.kyc.status),
            reasons=[KYC_REASON.pb(r) for r in c.kyc.reasons],
            check_time=timestamp(c.kyc.checked_at),
        ),
        create_time=timestamp(c.created_at),
        update_time=timestamp(c.updated_at),
        version=c.version,
        relationship_manager_id=c.relationship_manager_id,
    )


@og_component()
class CustomerApi(pb_grpc.CustomerServiceServicer):
    """ogpgy.customer.v1.CustomerService."""

    def __init__(self, service: CustomerUseCases, clock: Clock, pages: PageTokens) -> None:
        self._service = service
        self._responses: LRUCache[Customer, pb.GetCustomerResponse] = LRUCache(maxsize=4096)
        self._clock = clock
        self._pages = pages

    @gated(ADMIN, action="onboard customers")
    async def OnboardCustomer(
        self, request: pb.OnboardCustomerRequest, context: aio.ServicerContext
    ) -> pb.OnboardCustomerResponse:
        v = Violations()
        application = _application(request)
        validate_application(v, application, self._clock.today())
        v.raise_if_any()
        customer = await self._service.onboard(application, idempotency_key(request, "OnboardCustomer"))
        return pb.OnboardCustomerResponse(customer=customer_pb(customer))

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: aio.ServicerContext) -> pb.GetCustomerResponse:
        return self._response_of(await self._service.get(request.customer_id))

    def _response_of(self, customer: Customer) -> pb.GetCustomerResponse:
        """The response message of a customer as the caller may see it, built once per distinct
        value (a new version, or another masking, is another key): a cached read costs no message
        building. gRPC only reads a response to serialize it, so one message serves every call."""
        response = self._responses.get(customer)
        if response is None:
            response = self._responses[customer] = pb.GetCustomerResponse(customer=customer_pb(customer))
        return response

    async def ListCustomers(self, request: pb.ListCustomersRequest, context: aio.ServicerContext) -> pb.ListCustomersResponse:
        v = Violations()
        status = KYC_STATUS.of(request.kyc_status)
        # The token marks a place in the list of this status; who may see what is the use case's filter.
        page = self._pages.request(v, request.page_size, request.page_token, ("customers", status))
        v.raise_if_any()
        customers, token = await self._service.page(page, status)
        return pb.ListCustomersResponse(customers=[customer_pb(c) for c in customers], next_page_token=token)

    async def UpdateCustomer(self, request: pb.UpdateCustomerRequest, context: aio.ServicerContext) -> pb.UpdateCustomerResponse:
        v = Violations()
        change = _contact_change(request)
        validate_contact_change(v, change)
        v.raise_if_any()
        customer = await self._service.update_contact(
            request.customer_id, change, request.expected_version, idempotency_key(request, "UpdateCustomer")
        )
        return pb.UpdateCustomerResponse(customer=customer_pb(customer))

    @gated(ADMIN, action="assign relationship managers")
    async def AssignRelationshipManager(
        self, request: pb.AssignRelationshipManagerRequest, context: aio.ServicerContext
    ) -> pb.AssignRelationshipManagerResponse:
        customer = await self._service.assign_relationship_manager(
            request.customer_id, request.relationship_manager_id, idempotency_key(request, "AssignRelationshipManager")
        )
        return pb.AssignRelationshipManagerResponse(customer=customer_pb(customer))

    @gated(ADMIN, action="decide KYC reviews")
    async def ReviewKyc(self, request: pb.ReviewKycRequest, context: aio.ServicerContext) -> pb.ReviewKycResponse:
        v = Violations()
        clear = _DECISIONS.get(request.decision)
        v.check(clear is not None, "decision", "required: KYC_DECISION_CLEAR or KYC_DECISION_REJECT")
        customer = await self._service.review_kyc(request.customer_id, v.valid(clear), idempotency_key(request, "ReviewKyc"))
        return pb.ReviewKycResponse(customer=customer_pb(customer))
