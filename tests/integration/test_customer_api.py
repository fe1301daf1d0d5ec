"""The customer context over real gRPC on loopback (embedded bank, SQLite in a temp dir)."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import field_mask_pb2
from grpc import aio

from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import address_pb2, date_pb2
from tests.bank_helpers import Bank, fresh_document
from tests.conftest import document, onboarding
from tests.grpc_assert import error_reason, field_violations, rpc_error

Stub = pb_grpc.CustomerServiceStub


async def test_valid_onboarding_is_verified_and_readable(customers: Stub) -> None:
    created = (await customers.OnboardCustomer(onboarding("r-1"))).customer
    assert created.customer_id.startswith("cus_") and len(created.customer_id) == 30
    assert created.kyc.status == pb.KYC_STATUS_VERIFIED and not created.kyc.reasons
    assert created.version == 1
    fetched = (await customers.GetCustomer(pb.GetCustomerRequest(customer_id=created.customer_id))).customer
    assert fetched == created


async def test_rejected_kyc_carries_every_reason(customers: Stub) -> None:
    request = onboarding(
        "r-kyc",
        given_name="Ivan Petrovich",
        family_name="Sidorov",
        date_of_birth=date_pb2.Date(year=1961, month=4, day=12),
        document=document("AB1234560"),
    )
    rejected = (await customers.OnboardCustomer(request)).customer
    assert rejected.kyc.status == pb.KYC_STATUS_REJECTED
    assert list(rejected.kyc.reasons) == [
        pb.KYC_REJECTION_REASON_DOCUMENT_CHECK_DIGIT_MISMATCH,
        pb.KYC_REJECTION_REASON_SANCTIONS_LIST_MATCH,
    ]
    minor = (
        await customers.OnboardCustomer(
            onboarding("r-minor", date_of_birth=date_pb2.Date(year=2010, month=1, day=1), document=document("XY0000003"))
        )
    ).customer
    assert list(minor.kyc.reasons) == [pb.KYC_REJECTION_REASON_UNDERAGE]


async def test_bad_input_is_invalid_argument_with_field_violations(customers: Stub) -> None:
    bad = onboarding(
        "",
        email="nope",
        date_of_birth=date_pb2.Date(year=2001, month=2, day=30),
        document=pb.IdentityDocument(number="12", issuing_country_code="G"),
        address=address_pb2.PostalAddress(city="London", country_code="GB"),
    )
    assert set(await field_violations(customers.OnboardCustomer(bad))) == {"request_id"}, "the contract's rules first"
    bad.request_id = "bad-input"
    violations = await field_violations(customers.OnboardCustomer(bad))
    assert set(violations) == {
        "email",
        "date_of_birth",
        "document.type",
        "document.number",
        "document.issuing_country_code",
        "address.lines",
        "address.postal_code",
    }
    assert "E.164" not in violations["email"]
    assert set(await field_violations(customers.GetCustomer(pb.GetCustomerRequest(customer_id="42")))) == {"customer_id"}
    assert set(await field_violations(customers.ListCustomers(pb.ListCustomersRequest(page_size=-1, page_token="garbage")))) == {
        "page_size"
    }
    assert set(await field_violations(customers.ListCustomers(pb.ListCustomersRequest(page_token="garbage")))) == {"page_token"}


async def test_unknown_id_is_not_found(customers: Stub) -> None:
    err = await rpc_error(customers.GetCustomer(pb.GetCustomerRequest(customer_id="cus_01NOPE")), grpc.StatusCode.NOT_FOUND)
    assert "cus_01NOPE" in err.details()


async def test_retry_returns_the_first_answer_and_other_content_is_refused(customers: Stub) -> None:
    first = (await customers.OnboardCustomer(onboarding("same-id"))).customer
    again = (await customers.OnboardCustomer(onboarding("same-id"))).customer
    assert again == first
    info = await error_reason(
        customers.OnboardCustomer(onboarding("same-id", email="other@example.com")), grpc.StatusCode.ALREADY_EXISTS
    )
    assert info.reason == "IDEMPOTENCY_KEY_REUSED"
    listed = (await customers.ListCustomers(pb.ListCustomersRequest())).customers
    assert [c.customer_id for c in listed] == [first.customer_id], "a retry never creates a second customer"


async def test_concurrent_retries_create_one_customer(customers: Stub) -> None:
    answers = await asyncio.gather(*(customers.OnboardCustomer(onboarding("race")) for _ in range(20)))
    assert len({a.customer.customer_id for a in answers}) == 1
    assert len((await customers.ListCustomers(pb.ListCustomersRequest())).customers) == 1


async def test_same_document_under_a_new_request_id_is_already_exists(customers: Stub) -> None:
    first = (await customers.OnboardCustomer(onboarding("doc-1"))).customer
    info = await error_reason(customers.OnboardCustomer(onboarding("doc-2")), grpc.StatusCode.ALREADY_EXISTS)
    assert info.reason == "CUSTOMER_ALREADY_EXISTS" and info.metadata["customer_id"] == first.customer_id


async def test_pagination_walks_every_customer_once_in_order(customers: Stub) -> None:
    # Check digits by hand (ICAO 7-3-1): the first five are right, the last two wrong (-> REJECTED).
    numbers = ["AA0000013", "AA0000026", "AA0000039", "AA0000042", "AA0000055", "AA0000060", "AA0000070"]
    made = []
    for i, number in enumerate(numbers):
        made.append((await customers.OnboardCustomer(onboarding(f"p-{i}", document=document(number)))).customer.customer_id)
    seen, token, pages = [], "", 0
    while True:
        page = await customers.ListCustomers(pb.ListCustomersRequest(page_size=3, page_token=token))
        seen += [c.customer_id for c in page.customers]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == made and pages == 3
    verified = await customers.ListCustomers(pb.ListCustomersRequest(kyc_status=pb.KYC_STATUS_VERIFIED, page_size=500))
    assert [c.customer_id for c in verified.customers] == made[:5]
    first = await customers.ListCustomers(pb.ListCustomersRequest(page_size=3))
    other_filter = pb.ListCustomersRequest(page_size=3, page_token=first.next_page_token, kyc_status=pb.KYC_STATUS_REJECTED)
    assert "page_token" in await field_violations(customers.ListCustomers(other_filter))


async def test_update_changes_contact_data_idempotently(customers: Stub) -> None:
    created = (await customers.OnboardCustomer(onboarding("u-0"))).customer
    change = pb.UpdateCustomerRequest(
        request_id="u-1",
        customer_id=created.customer_id,
        customer=pb.Customer(email="ada@analytical.engine"),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
    )
    updated = (await customers.UpdateCustomer(change)).customer
    assert updated.email == "ada@analytical.engine" and updated.version == 2
    assert updated.phone == created.phone and updated.address == created.address
    assert (await customers.UpdateCustomer(change)).customer.version == 2, "a retry applies nothing"
    stale = pb.UpdateCustomerRequest(
        request_id="u-2",
        customer_id=created.customer_id,
        customer=pb.Customer(phone="+4915112345678"),
        update_mask=field_mask_pb2.FieldMask(paths=["phone"]),
        expected_version=1,
    )
    info = await error_reason(customers.UpdateCustomer(stale), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "VERSION_MISMATCH" and info.metadata["current_version"] == "2"


async def test_update_validates_mask_and_values(customers: Stub) -> None:
    created = (await customers.OnboardCustomer(onboarding("v-0"))).customer
    bad = pb.UpdateCustomerRequest(
        request_id="v-1",
        customer_id=created.customer_id,
        customer=pb.Customer(email="broken"),
        update_mask=field_mask_pb2.FieldMask(paths=["email", "date_of_birth"]),
    )
    assert set(await field_violations(customers.UpdateCustomer(bad))) == {"update_mask", "customer.email"}
    missing = pb.UpdateCustomerRequest(
        request_id="v-2",
        customer_id="cus_01UNKNOWN",
        customer=pb.Customer(email="a@b.co"),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
    )
    await rpc_error(customers.UpdateCustomer(missing), grpc.StatusCode.NOT_FOUND)


async def test_a_possible_sanctions_match_waits_for_an_admin(channel: aio.Channel, bank: RunningBank) -> None:
    """A near hit was a silent VERIFIED (or an evasion); it is a REVIEW now: no account until an
    admin clears it (then the default account follows by event), or rejects it."""
    client = Bank(channel)
    near = (
        await client.customers.OnboardCustomer(
            onboarding("near-1", given_name="Viktor J.", family_name="Blackwood", document=document(fresh_document()))
        )
    ).customer
    assert (near.kyc.status, list(near.kyc.reasons)) == (pb.KYC_STATUS_REVIEW, [pb.KYC_REJECTION_REASON_SANCTIONS_POSSIBLE_MATCH])
    refused = apb.OpenAccountRequest(
        request_id="too-soon", customer_id=near.customer_id, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
    )
    assert (
        await error_reason(client.accounts.OpenAccount(refused), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "CUSTOMER_NOT_VERIFIED"
    cleared = (
        await client.customers.ReviewKyc(
            pb.ReviewKycRequest(request_id="clear-1", customer_id=near.customer_id, decision=pb.KYC_DECISION_CLEAR)
        )
    ).customer
    assert cleared.kyc.status == pb.KYC_STATUS_VERIFIED and cleared.version == near.version + 1
    assert (await client.default_account(near.customer_id)).type == apb.ACCOUNT_TYPE_PERSONAL_CHECKING, "the event opened it"
    again = pb.ReviewKycRequest(request_id="clear-2", customer_id=near.customer_id, decision=pb.KYC_DECISION_REJECT)
    assert (
        await error_reason(client.customers.ReviewKyc(again), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "KYC_NOT_IN_REVIEW"

    other = (
        await client.customers.OnboardCustomer(
            onboarding(
                "near-2",
                given_name="Ivan",
                family_name="Sidorov",
                date_of_birth=date_pb2.Date(year=1961, month=4, day=12),
                document=document(fresh_document()),
            )
        )
    ).customer
    assert other.kyc.status == pb.KYC_STATUS_REVIEW
    rejected = (
        await client.customers.ReviewKyc(
            pb.ReviewKycRequest(request_id="reject-1", customer_id=other.customer_id, decision=pb.KYC_DECISION_REJECT)
        )
    ).customer
    assert rejected.kyc.status == pb.KYC_STATUS_REJECTED and pb.KYC_REJECTION_REASON_REJECTED_ON_REVIEW in rejected.kyc.reasons
    assert "decision" in await field_violations(
        client.customers.ReviewKyc(pb.ReviewKycRequest(request_id="r", customer_id=other.customer_id))
    )
