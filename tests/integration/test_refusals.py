"""A refused write leaves no row, and its request_id answers the same refusal, never INTERNAL. A
refusal of the request itself (a taken username or document) leaves the id free: corrected, it
succeeds with that id. A refusal for the state the request met (funds, a balance, a version the
customer is not at) is the id's answer for good: the same request later, when the customer has
reached that version, still answers VERSION_MISMATCH (tests/contract/test_replays.py). Before, CreateUser with a taken username answered INTERNAL and its
request_id stayed poisoned for good."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from grpc import aio

from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.bank_helpers import Bank, eur, fresh_document
from tests.conftest import document, onboarding
from tests.grpc_assert import error_reason


async def _refused_twice(call: object, again: object, code: grpc.StatusCode, reason: str) -> None:
    for attempt in (call, again):
        assert (await error_reason(attempt, code)).reason == reason


async def test_a_taken_username_keeps_its_request_id_free(channel: aio.Channel) -> None:
    identity = igrpc.IdentityServiceStub(channel)

    def create(name: str) -> object:
        return identity.CreateUser(
            ipb.CreateUserRequest(
                request_id="new-user", username=name, password="a-long-password", roles=[ipb.ROLE_RELATIONSHIP_MANAGER]
            )
        )

    await _refused_twice(create("admin"), create("admin"), grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")
    made = (await create("rosa")).user
    assert made.username == "rosa" and (await create("rosa")).user == made, "then idempotent as ever"


async def test_rule_refusals_stand_as_their_request_ids_answer(channel: aio.Channel) -> None:
    """A refusal for the state the request met (funds, a balance) is its request_id's answer for
    good, also once the state has changed: an identical request racing it can never succeed where
    it was refused (tests/integration/test_refusals_stand.py). A new request_id is a new request."""
    bank = Bank(channel)
    customer = await bank.verified_customer("refusals")
    account = (await bank.default_account(customer)).account_id
    savings = await bank.open(customer, "refusals")

    transfer = apb.TransferRequest(
        request_id="too-early", debit_account_id=savings, credit_account_id=account, amount=eur("5.00")
    )
    hold = apb.PlaceHoldRequest(
        request_id="too-early-hold", debit_account_id=savings, credit_account_id=account, amount=eur("5.00")
    )
    close = apb.CloseAccountRequest(request_id="close-savings", account_id=savings)
    for _ in range(2):
        await _refused_twice(
            bank.accounts.Transfer(transfer),
            bank.accounts.Transfer(transfer),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_FUNDS",
        )
        await _refused_twice(
            bank.accounts.PlaceHold(hold),
            bank.accounts.PlaceHold(hold),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_FUNDS",
        )
        await bank.deposit(savings, "10.00", f"refusals-{_}")  # the funds arrive: the refusals stand
    await _refused_twice(
        bank.accounts.CloseAccount(close),
        bank.accounts.CloseAccount(close),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ACCOUNT_BALANCE_NOT_ZERO",
    )
    transfer.request_id, hold.request_id, close.request_id = "in-time", "in-time-hold", "close-savings-2"
    assert (await bank.accounts.Transfer(transfer)).transfer.amount.amount == "5.00", "a new request, now possible"
    placed = (await bank.accounts.PlaceHold(hold)).hold
    assert placed.status == apb.HOLD_STATUS_PLACED
    await bank.accounts.Withdraw(apb.WithdrawRequest(request_id="empty-it", account_id=savings, amount=eur("10.00")))
    await bank.accounts.CaptureHold(apb.CaptureHoldRequest(request_id="capture-it", hold_id=placed.hold_id))
    assert (await bank.accounts.CloseAccount(close)).account.status == apb.ACCOUNT_STATUS_CLOSED


async def test_a_duplicate_document_keeps_the_request_id_free_and_a_stale_version_is_its_answer(channel: aio.Channel) -> None:
    bank = Bank(channel)
    number = fresh_document()
    first = (await bank.customers.OnboardCustomer(onboarding("doc-1", document=document(number)))).customer
    twin = onboarding("doc-2", document=document(number))
    await _refused_twice(
        bank.customers.OnboardCustomer(twin),
        bank.customers.OnboardCustomer(twin),
        grpc.StatusCode.ALREADY_EXISTS,
        "CUSTOMER_ALREADY_EXISTS",
    )
    assert (await bank.customers.OnboardCustomer(onboarding("doc-2", document=document(fresh_document())))).customer.customer_id

    def update(version: int, request_id: str = "new-phone") -> object:
        return bank.customers.UpdateCustomer(
            cpb.UpdateCustomerRequest(
                request_id=request_id,
                customer_id=first.customer_id,
                customer=cpb.Customer(phone="+4915112345678"),
                update_mask=field_mask_pb2.FieldMask(paths=["phone"]),
                expected_version=version,
            )
        )

    await _refused_twice(update(7), update(7), grpc.StatusCode.FAILED_PRECONDITION, "VERSION_MISMATCH")
    reused = await error_reason(update(first.version), grpc.StatusCode.ALREADY_EXISTS)
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED", "the id answers its refusal: a corrected request takes a new one"
    assert (await update(first.version, "new-phone-2")).customer.phone == "+4915112345678"
