"""Every List RPC of every context, found by server reflection (a new one is covered by itself):
walked page by page with sizes 1, 2, 7 and the maximum, it returns every item exactly once, in the
same order whatever the page size, and ends. Its tokens are opaque and tamper-evident: edited,
forged, foreign, expired or made up, a token is INVALID_ARGUMENT; page_size above the maximum is
coerced to it (AIP-158) and a negative one is INVALID_ARGUMENT. Before, ListInterestRuns answered
page 1 again with the same token (a client walking it looped forever), and a forged position
(10^20, 2^63) answered INTERNAL."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc import aio

from common.clock import Clock, FixedClock
from common.config import Settings
from common.faults import arm, disarm
from common.grpc.client import bearer_channel
from common.pagination import PageTokens
from common.validation import MAX_PAGE_SIZE
from mesh.embedded import RunningBank
from og.operations.v1 import dead_letters_pb2 as odpb
from og.operations.v1 import dead_letters_pb2_grpc as odgrpc
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.interest.v1 import interest_service_pb2 as irpb
from ogpgy.interest.v1 import interest_service_pb2_grpc as irgrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from ogpgy.type.v1 import date_pb2
from tests.bank_helpers import Bank, create_user, eur, generous_fraud_rules
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.grpc_assert import field_violations
from tests.rpc_catalog import Rpc, served_rpcs

FAILING_CONSUMER = "consumer.notification.handle"
ITEMS = 9  # of every kind: several pages at every size below the maximum
SIZES = (1, 2, 7, MAX_PAGE_SIZE)
NOT_OURS = ("velocitypay.",)  # the outside world's simulator has its own tokens


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, fraud_rules_path=generous_fraud_rules(tmp_path))


async def _world(channel: aio.Channel) -> dict[str, str]:
    """ITEMS of everything a List shows, under one parent of each kind; the parents by field name."""
    bank = Bank(channel)
    customers = [await bank.verified_customer(f"page-{i}") for i in range(ITEMS)]
    parent = customers[0]
    account = (await bank.default_account(parent)).account_id
    payee = (await bank.default_account(customers[1])).account_id
    loans: list[str] = []
    await bank.deposit(account, "10000.00", "page-funds")
    for i in range(ITEMS):
        await bank.open(parent, f"page-{i}")
        await bank.deposit(account, "1.00", f"page-{i}")
        await bank.accounts.PlaceHold(
            apb.PlaceHoldRequest(
                request_id=f"page-hold-{i}", debit_account_id=account, credit_account_id=payee, amount=eur("1.00")
            )
        )
        await pgrpc.PaymentServiceStub(channel).CreatePayment(
            ppb.CreatePaymentRequest(
                request_id=f"page-pay-{i}",
                debtor_account_id=account,
                amount=eur("1.00"),
                internal=ppb.InternalBeneficiary(account_id=(await bank.default_account(customers[1])).account_id),
            )
        )
        applied = await lgrpc.LendingServiceStub(channel).ApplyForLoan(
            lpb.ApplyForLoanRequest(
                request_id=f"page-loan-{i}", customer_id=parent, account_id=account, principal=eur("100.00"), term_months=12
            )
        )
        loans.append(applied.loan.loan_id)
        await create_user(
            igrpc.IdentityServiceStub(channel), f"page.user.{i}", ipb.ROLE_RELATIONSHIP_MANAGER, "password-of-pages"
        )
        day = date(2026, 1, 1) + timedelta(days=i)
        async for _ in irgrpc.InterestServiceStub(channel).RunDailyInterest(
            irpb.RunDailyInterestRequest(
                request_id=f"page-run-{i}", business_date=date_pb2.Date(year=day.year, month=day.month, day=day.day)
            )
        ):
            pass
    approval = lpb.ApproveLoanRequest(request_id="page-approve", loan_id=loans[0], annual_interest_rate="0.05")
    lending = lgrpc.LendingServiceStub(channel)
    await lending.ApproveLoan(approval)  # its schedule: 12 installments
    await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id="page-disburse", loan_id=loans[0]))
    for i, loan in enumerate(loans[1:], 1):  # ITEMS sagas for ListSagas
        await lending.ApproveLoan(
            lpb.ApproveLoanRequest(request_id=f"page-approve-{i}", loan_id=loan, annual_interest_rate="0.05")
        )
        await lending.DisburseLoan(lpb.DisburseLoanRequest(request_id=f"page-disburse-{i}", loan_id=loan))
    for i in range(ITEMS):
        await lending.RepayLoan(lpb.RepayLoanRequest(request_id=f"page-repay-{i}", loan_id=loans[0], amount=eur("1.00")))
    batch = await _batch(channel, account, payee)
    await _dead_letters(channel, bank)
    admin_id = await _settled_audit_trail(igrpc.IdentityServiceStub(channel))
    return {
        "batch_id": batch,
        "customer_id": parent,
        "account_id": account,
        "debtor_account_id": account,
        "actor": admin_id,
        "resource": "",
        "loan_id": loans[0],
        "filter": "",  # an operator's list unfiltered: every item
    }


async def _batch(channel: aio.Channel, account: str, payee: str) -> str:
    """A bulk payment of ITEMS lines, paid to its end."""
    lines = [
        bpb.PaymentBatchLine(end_to_end_id=f"line-{i}", internal=ppb.InternalBeneficiary(account_id=payee), amount=eur("1.00"))
        for i in range(ITEMS)
    ]
    request = bpb.SubmitPaymentBatchRequest(
        request_id="page-batch",
        debtor_account_id=account,
        lines=bpb.PaymentBatchLines(lines=lines, number_of_transactions=ITEMS, control_sum=f"{ITEMS}.00"),
    )
    answers = [answer async for answer in bgrpc.BulkPaymentServiceStub(channel).SubmitPaymentBatch(request)]
    return answers[-1].batch.batch_id


async def _dead_letters(channel: aio.Channel, bank: Bank) -> None:
    """ITEMS dead letters: customers onboarded while the notification context's handler fails."""
    arm(FAILING_CONSUMER)
    try:
        for i in range(ITEMS):
            await bank.verified_customer(f"page-dead-{i}")
        letters = odgrpc.DeadLetterServiceStub(channel)
        deadline = time.monotonic() + 20
        while len((await letters.ListDeadLetters(odpb.ListDeadLettersRequest(page_size=500))).dead_letters) < ITEMS:
            assert time.monotonic() < deadline, "the dead letters did not arrive"
            await asyncio.sleep(0.1)
    finally:
        disarm(FAILING_CONSUMER)


async def _settled_audit_trail(identity: igrpc.IdentityServiceStub) -> str:
    """The admin's user id, once the audit records of everything above have arrived (they travel
    through the outbox): the walks compare lists that must not grow meanwhile."""
    users = (await identity.ListUsers(ipb.ListUsersRequest(page_size=500))).users
    admin_id = next(u.user_id for u in users if u.username == "admin")
    last, deadline = -1, time.monotonic() + 20
    while time.monotonic() < deadline:
        count = len((await identity.ListAuditEvents(ipb.ListAuditEventsRequest(actor=admin_id, page_size=500))).audit_events)
        if count == last:
            return admin_id
        last = count
        await asyncio.sleep(0.5)
    raise AssertionError("the audit trail kept growing")


def _lists(rpcs: list[Rpc]) -> list[Rpc]:
    found = [r for r in rpcs if r.name.startswith("List") and not r.service.startswith(NOT_OURS)]
    for rpc in found:
        fields = {f.name for f in rpc.request.DESCRIPTOR.fields}
        assert {"page_size", "page_token"} <= fields, f"{rpc.path} pages without page_size/page_token"
    return found


def _request(rpc: Rpc, parents: dict[str, str], size: int, token: str = "") -> Message:
    request = rpc.request(page_size=size, page_token=token)
    for field in rpc.request.DESCRIPTOR.fields:
        if field.name in ("page_size", "page_token", "filter") or field.type != field.TYPE_STRING:
            continue  # an empty AIP-160 filter: every item
        assert field.name in parents, f"{rpc.path}: no test parent for '{field.name}'; add one to _world"
        setattr(request, field.name, parents[field.name])
    return request


def _items(response: Message) -> list[bytes]:
    repeated = [f for f in response.DESCRIPTOR.fields if f.is_repeated]
    assert len(repeated) == 1, f"{response.DESCRIPTOR.full_name}: one repeated field expected"
    return [item.SerializeToString(deterministic=True) for item in getattr(response, repeated[0].name)]


async def _call(channel: aio.Channel, rpc: Rpc, request: Message) -> Any:
    call = channel.unary_unary(
        rpc.path, request_serializer=rpc.request.SerializeToString, response_deserializer=rpc.response.FromString
    )
    return await call(request)


async def _walk(channel: aio.Channel, rpc: Rpc, parents: dict[str, str], size: int) -> list[bytes]:
    seen: list[bytes] = []
    token = ""
    for _ in range(200):  # far more pages than there are items: a loop fails here
        page = await _call(channel, rpc, _request(rpc, parents, size, token))
        items = _items(page)
        assert len(items) <= size, f"{rpc.name}: {len(items)} items on a page of {size}"
        assert items or not page.next_page_token, f"{rpc.name}: an empty page that is not the last"
        seen += items
        if not page.next_page_token:
            return seen
        assert page.next_page_token != token, f"{rpc.name}: the same token again (the walk would never end)"
        token = page.next_page_token
    raise AssertionError(f"{rpc.name} never ended")


@pytest.fixture
async def lists(bank: RunningBank, admin_token: str) -> AsyncIterator[tuple[aio.Channel, list[Rpc], dict[str, str]]]:
    async with bearer_channel(bank.target, admin_token) as channel:
        parents = await _world(channel)
        clock = bank.contexts["lending"].resolve(Clock)
        assert isinstance(clock, FixedClock)
        clock.move_to(clock.now() + timedelta(days=75))  # two installments of every disbursed loan due: each in arrears
        yield channel, _lists(await asyncio.to_thread(served_rpcs, bank.target)), parents


async def test_every_list_returns_each_item_once_in_one_order_and_ends(
    lists: tuple[aio.Channel, list[Rpc], dict[str, str]],
) -> None:
    channel, rpcs, parents = lists
    assert len(rpcs) >= 8, [r.name for r in rpcs]
    for rpc in rpcs:
        whole = await _walk(channel, rpc, parents, MAX_PAGE_SIZE)
        assert len(whole) >= ITEMS and len(set(whole)) == len(whole), f"{rpc.name}: {len(whole)} items, duplicates among them"
        for size in SIZES[:-1]:
            assert await _walk(channel, rpc, parents, size) == whole, f"{rpc.name} at page size {size}: other items or order"
        beyond = _items(await _call(channel, rpc, _request(rpc, parents, MAX_PAGE_SIZE * 10)))
        assert beyond == whole[:MAX_PAGE_SIZE], f"{rpc.name}: page_size above the maximum is the maximum"
        assert "page_size" in await field_violations(_call(channel, rpc, _request(rpc, parents, -1)))


def _resigned(tokens: PageTokens, token: str, **changes: object) -> str:
    """`token` with its fields changed, signed with the server's own key (as if the key leaked)."""
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    body = json.dumps({**payload, **changes}, separators=(",", ":")).encode()
    mac = tokens._mac(body)
    return f"{base64.urlsafe_b64encode(body).decode().rstrip('=')}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


async def test_a_token_that_is_not_the_servers_own_is_invalid_argument(
    bank: RunningBank, lists: tuple[aio.Channel, list[Rpc], dict[str, str]]
) -> None:
    channel, rpcs, parents = lists
    tokens = bank.contexts["infrastructure"].resolve(PageTokens)
    for rpc in rpcs:
        token = (await _call(channel, rpc, _request(rpc, parents, 2))).next_page_token
        other = next(r for r in rpcs if r is not rpc)
        foreign = (await _call(channel, other, _request(other, parents, 2))).next_page_token
        payload, mac = token.split(".")
        bad = {
            "edited": f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}",
            "unsigned (the old format)": base64.urlsafe_b64encode(b'{"a":2,"q":"x"}').decode(),
            "of another list": foreign,
            "expired": _resigned(tokens, token, e=1),
            "position 10^20": _resigned(tokens, token, p=10**20),
            "position 2^63": _resigned(tokens, token, p=2**63),
            "position 1e999": _resigned(tokens, token, p=float("inf")),
            "position as text": _resigned(tokens, token, p="not a position\n"),
            "garbage": "%%%",
        }
        for name, forged in bad.items():
            try:
                violations = await field_violations(_call(channel, rpc, _request(rpc, parents, 2, forged)))
            except AssertionError as failed:
                raise AssertionError(f"{rpc.name}, {name} token: {failed}") from failed
            assert set(violations) == {"page_token"}, (rpc.name, name, violations)


async def test_unknown_parents_are_not_found_for_admins(lists: tuple[aio.Channel, list[Rpc], dict[str, str]]) -> None:
    """A List under a parent nobody knows answered an empty page; an admin (who may see every
    parent) gets NOT_FOUND, anyone else what a parent of somebody else's answers."""
    channel, rpcs, _ = lists
    nobody = {
        "customer_id": "cus_00000000000000000000000000",
        "account_id": "acc_00000000000000000000000000",
        "debtor_account_id": "acc_00000000000000000000000000",
    }
    for rpc in rpcs:
        if not any(f.name in nobody for f in rpc.request.DESCRIPTOR.fields):
            continue
        with pytest.raises(aio.AioRpcError) as missing:
            await _call(channel, rpc, _request(rpc, nobody, 10))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND, (rpc.name, missing.value.details())


async def test_tokens_work_across_replicas(bank: RunningBank, lists: tuple[aio.Channel, list[Rpc], dict[str, str]]) -> None:
    """Every process derives the same key from the bank's page-token secret: a token made by one
    replica is read by another (tested here by a second bank given the same secret and signing key)."""
    from mesh.embedded import start_embedded

    channel, rpcs, parents = lists
    users = next(r for r in rpcs if r.name == "ListUsers")
    token = (await _call(channel, users, _request(users, parents, 2))).next_page_token
    settings = bank.contexts["infrastructure"].resolve(Settings)
    twin_settings = Settings(
        data_dir=Path(settings.data_dir) / "twin", port=0, admin_password=ADMIN_PASSWORD, signing_key_path=settings.key_path()
    )
    twin_settings.page_key_path().parent.mkdir(parents=True)
    shutil.copyfile(settings.page_key_path(), twin_settings.page_key_path())  # the secret every replica is given
    twin = await start_embedded(twin_settings)
    try:
        async with bearer_channel(twin.target, await issue_token(twin.target)) as other:
            await _call(other, users, _request(users, parents, 2, token))
    finally:
        await twin.stop(grace=1)
