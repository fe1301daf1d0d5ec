"""Errors and metadata as AIP-193 asks: an ErrorInfo on every error (with a BadRequest whose
violations carry a reason, a ResourceInfo, a RetryInfo where waiting helps), and the request id
echoed in the answer's metadata, sent or made."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio

from common.errors import Unavailable
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from tests.bank_helpers import admin_channel
from tests.grpc_assert import rpc_error, status_details


@pytest.fixture
async def customers(bank: RunningBank) -> AsyncIterator[cgrpc.CustomerServiceStub]:
    async with admin_channel(bank.target) as channel:
        yield cgrpc.CustomerServiceStub(channel)


def _echoed(metadata: aio.Metadata | None) -> str:
    return next((str(v) for k, v in metadata or () if k == "x-request-id"), "")


async def test_bad_input_names_each_field_with_a_reason_beside_an_error_info(customers: cgrpc.CustomerServiceStub) -> None:
    error = await rpc_error(
        customers.OnboardCustomer(cpb.OnboardCustomerRequest(request_id="e-1")), grpc.StatusCode.INVALID_ARGUMENT
    )
    status = rich_status(error)
    assert status is not None
    info = unpack_detail(status, error_details_pb2.ErrorInfo)
    bad = unpack_detail(status, error_details_pb2.BadRequest)
    assert info is not None and info.reason == "INVALID_REQUEST" and info.domain == "ogpgy.bank"
    assert bad is not None and {v.reason for v in bad.field_violations} <= {"FIELD_REQUIRED", "FIELD_INVALID"}
    assert "given_name" in info.metadata["fields"].split(",")
    malformed = await rpc_error(
        customers.GetCustomer(cpb.GetCustomerRequest(customer_id="nope")), grpc.StatusCode.INVALID_ARGUMENT
    )
    malformed_status = rich_status(malformed)
    assert malformed_status is not None
    detail = unpack_detail(malformed_status, error_details_pb2.BadRequest)
    assert detail is not None and [(v.field, v.reason) for v in detail.field_violations] == [("customer_id", "FIELD_INVALID")]


async def test_an_unknown_resource_has_an_error_info_and_its_resource_info(customers: cgrpc.CustomerServiceStub) -> None:
    unknown = "cus_00000000000000000000000000"
    error = await rpc_error(customers.GetCustomer(cpb.GetCustomerRequest(customer_id=unknown)), grpc.StatusCode.NOT_FOUND)
    status = rich_status(error)
    assert status is not None
    info = unpack_detail(status, error_details_pb2.ErrorInfo)
    resource = unpack_detail(status, error_details_pb2.ResourceInfo)
    assert info is not None and info.reason == "RESOURCE_NOT_FOUND" and info.metadata["resource_type"] == "customer"
    assert resource is not None and resource.resource_name == unknown


async def test_the_request_id_is_echoed_on_success_and_failure_and_made_when_not_sent(
    customers: cgrpc.CustomerServiceStub,
) -> None:
    call = customers.ListCustomers(cpb.ListCustomersRequest(page_size=1), metadata=(("x-request-id", "trace-me-42"),))
    await call
    assert _echoed(await call.trailing_metadata()) == "trace-me-42"
    failed = customers.GetCustomer(cpb.GetCustomerRequest(customer_id="nope"), metadata=(("x-request-id", "trace-me-43"),))
    error = await rpc_error(failed, grpc.StatusCode.INVALID_ARGUMENT)
    assert _echoed(error.trailing_metadata()) == "trace-me-43"
    unnamed = customers.ListCustomers(cpb.ListCustomersRequest(page_size=1))
    await unnamed
    assert re.fullmatch(r"[0-9a-f]{32}", _echoed(await unnamed.trailing_metadata()))


def test_unavailable_says_when_to_try_again() -> None:
    details = {d.TypeName().rsplit(".", 1)[-1] for d in status_details(Unavailable("ACCOUNTS_UNAVAILABLE", "down"))}
    assert details == {"ErrorInfo", "RetryInfo"}
