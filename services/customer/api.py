"""gRPC servicer of the customer context: proto <-> domain, nothing else."""

from __future__ import annotations

from grpc import aio

from common.di import og_component
from common.grpc.convert import calendar_date, idempotency_key, timestamp
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import address_pb2, date_pb2
from services.customer.domain import (
    Address,
    Application,
    ContactChange,
    Customer,
    DocumentType,
    IdentityDocument,
)
from services.customer.service import KYC_STATUS_PB, CustomerApplicationService

_DOCUMENT_TYPES = {
    pb.DOCUMENT_TYPE_PASSPORT: DocumentType.PASSPORT,
    pb.DOCUMENT_TYPE_NATIONAL_ID: DocumentType.NATIONAL_ID,
}
_DOCUMENT_TYPES_PB: dict[DocumentType | None, pb.DocumentType.ValueType] = {v: k for k, v in _DOCUMENT_TYPES.items()}
_KYC_STATUS = {v: k for k, v in KYC_STATUS_PB.items()}
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
        date_of_birth=calendar_date(dob.year, dob.month, dob.day) if req.HasField("date_of_birth") else None,
        document=IdentityDocument(_DOCUMENT_TYPES.get(req.document.type), req.document.number, req.document.issuing_country_code)
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
        date_of_birth=date_pb2.Date(year=c.date_of_birth.year, month=c.date_of_birth.month, day=c.date_of_birth.day)
        if c.date_of_birth.year > 1
        else None,  # masked
        document=pb.IdentityDocument(
            type=_DOCUMENT_TYPES_PB.get(c.document.type, pb.DOCUMENT_TYPE_UNSPECIFIED),
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
            status=KYC_STATUS_PB[c.kyc.status],
            reasons=[pb.KycRejectionReason.Value(f"KYC_REJECTION_REASON_{r.value}") for r in c.kyc.reasons],
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

    def __init__(self, service: CustomerApplicationService) -> None:
        self._service = service

    async def OnboardCustomer(
        self, request: pb.OnboardCustomerRequest, context: aio.ServicerContext
    ) -> pb.OnboardCustomerResponse:
        customer = await self._service.onboard(_application(request), idempotency_key(request, "OnboardCustomer"))
        return pb.OnboardCustomerResponse(customer=customer_pb(customer))

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: aio.ServicerContext) -> pb.GetCustomerResponse:
        return pb.GetCustomerResponse(customer=customer_pb(await self._service.get(request.customer_id)))

    async def ListCustomers(self, request: pb.ListCustomersRequest, context: aio.ServicerContext) -> pb.ListCustomersResponse:
        customers, token = await self._service.page(request.page_size, request.page_token, _KYC_STATUS.get(request.kyc_status))
        return pb.ListCustomersResponse(customers=[customer_pb(c) for c in customers], next_page_token=token)

    async def UpdateCustomer(self, request: pb.UpdateCustomerRequest, context: aio.ServicerContext) -> pb.UpdateCustomerResponse:
        customer = await self._service.update_contact(
            request.customer_id,
            _contact_change(request),
            request.expected_version,
            idempotency_key(request, "UpdateCustomer"),
        )
        return pb.UpdateCustomerResponse(customer=customer_pb(customer))

    async def AssignRelationshipManager(
        self, request: pb.AssignRelationshipManagerRequest, context: aio.ServicerContext
    ) -> pb.AssignRelationshipManagerResponse:
        customer = await self._service.assign_relationship_manager(
            request.customer_id, request.relationship_manager_id, idempotency_key(request, "AssignRelationshipManager")
        )
        return pb.AssignRelationshipManagerResponse(customer=customer_pb(customer))

    async def ReviewKyc(self, request: pb.ReviewKycRequest, context: aio.ServicerContext) -> pb.ReviewKycResponse:
        customer = await self._service.review_kyc(
            request.customer_id, _DECISIONS.get(request.decision), idempotency_key(request, "ReviewKyc")
        )
        return pb.ReviewKycResponse(customer=customer_pb(customer))
