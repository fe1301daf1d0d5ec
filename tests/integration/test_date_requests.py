"""Every RPC that takes a date (found by reflection) answers the calendar's edges and dates beyond it
with a canonical refusal, never INTERNAL; and an admin-only one refuses a caller who is no admin
PERMISSION_DENIED whatever the body (a date past 9999, a month 13, bytes that are no message),
before looking at it. ChargeMonthlyFees for December 9999 answered INTERNAL to any caller: its
month's end overflowed `date`, and the date was validated before the admin check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc import aio

from common.config import Settings
from common.grpc.client import bearer_channel, open_channel
from mesh.embedded import RunningBank
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from tests.bank_helpers import Bank, create_user
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.rpc_catalog import Rpc, call_raw, served_rpcs

DATE = "ogpgy.type.v1.Date"
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# Who may call each RPC that takes a date: a new one fails the test until it is named here.
ADMINS_ONLY = {"AccrueInterest", "ChargeMonthlyFees", "RunDailyInterest", "GetInterestRun", "RunCollection", "OnboardCustomer"}
OWNERS_TOO = {"UpdateCustomer", "GetStatement", "ExportStatement"}  # the customer themself: their own data, their own statement
# (year, month, day): the calendar's last day and month, its first day, and parts beyond it.
EDGES = [
    (9999, 12, 31),
    (9999, 12, 0),
    (1, 1, 1),
    (2024, 2, 29),
    (2025, 2, 29),
    (9999, 13, 1),
    (10000, 1, 1),
    (0, 0, 31),
    (-1, -1, -1),
    (2**31 - 1, 2**31 - 1, 2**31 - 1),
]
PASSWORD = "a-customer-password"


def _date_paths(message: Descriptor, path: tuple[FieldDescriptor, ...] = ()) -> Iterator[tuple[FieldDescriptor, ...]]:
    for field in message.fields:
        kind = field.message_type
        if kind is None or field.is_repeated:
            continue
        if kind.full_name == DATE:
            yield (*path, field)
        elif not kind.full_name.startswith("google."):
            yield from _date_paths(kind, (*path, field))


def _request(rpc: Rpc, path: tuple[FieldDescriptor, ...], day: tuple[int, int, int], n: int) -> bytes:
    """The date at `path`, and what a well-formed call of most of these RPCs also needs (a request
    id, a currency, a chunk size, a tier), so that the date is what is judged."""
    request = rpc.request()
    target: Any = request
    for parent in path:
        target = getattr(target, parent.name)
    target.year, target.month, target.day = day
    fields = rpc.descriptor.fields_by_name
    if "request_id" in fields:
        request.request_id = f"dates-{n}"
    if "currency_code" in fields:
        request.currency_code = "EUR"
    if "limit" in fields:
        request.limit = 10
    if "tiers" in fields:
        request.tiers.add().annual_rate = "0.01"
    payload: bytes = request.SerializeToString()
    return payload


@dataclass
class Callers:
    admin: aio.Channel
    customer: aio.Channel
    stranger: aio.Channel


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


@pytest.fixture
async def callers(bank: RunningBank) -> AsyncIterator[Callers]:
    async with bearer_channel(bank.target, await issue_token(bank.target)) as admin:
        customer_id = await Bank(admin).verified_customer("dates")
        await create_user(igrpc.IdentityServiceStub(admin), "date.customer", ipb.ROLE_CUSTOMER, PASSWORD, customer_id)
        token = await issue_token(bank.target, "date.customer", PASSWORD)
        async with bearer_channel(bank.target, token) as customer, open_channel(bank.target) as stranger:
            yield Callers(admin, customer, stranger)


async def test_every_rpc_taking_a_date_refuses_the_calendars_edges_canonically(bank: RunningBank, callers: Callers) -> None:
    rpcs = [(rpc, path) for rpc in await asyncio.to_thread(served_rpcs, bank.target) for path in _date_paths(rpc.descriptor)]
    assert {rpc.name for rpc, _ in rpcs} == ADMINS_ONLY | OWNERS_TOO, "name who may call each RPC taking a date"
    for n, ((rpc, path), day) in enumerate((found, day) for found in rpcs for day in EDGES):
        payload = _request(rpc, path, day, n)
        admin = await call_raw(callers.admin, rpc, payload)
        customer = await call_raw(callers.customer, rpc, payload)
        stranger = await call_raw(callers.stranger, rpc, payload)
        where = f"{rpc.name} {'.'.join(f.name for f in path)}={day}"
        assert not NEVER & {admin, customer}, f"{where}: admin {admin.name}, customer {customer.name}"
        assert stranger == grpc.StatusCode.UNAUTHENTICATED, f"{where}: a stranger got {stranger.name}"
        if rpc.name in ADMINS_ONLY:
            assert customer == grpc.StatusCode.PERMISSION_DENIED, f"{where}: a customer got {customer.name}"
        if day[0] > 9999 or not 0 <= day[1] <= 12 or day[2] < 0:
            assert admin == grpc.StatusCode.INVALID_ARGUMENT, f"{where}: beyond the calendar, an admin got {admin.name}"


async def test_an_admin_only_rpc_refuses_anyone_else_whatever_the_body(bank: RunningBank, callers: Callers) -> None:
    """Bytes that are no message, an empty body, a request breaking every rule: PERMISSION_DENIED
    to a customer, before the contract's rules or the handler look at it."""
    rpcs = [rpc for rpc in await asyncio.to_thread(served_rpcs, bank.target) if rpc.name in ADMINS_ONLY]
    assert len(rpcs) == len(ADMINS_ONLY)
    for rpc in rpcs:
        for payload in (b"", b"\xff\xff\xff", _request(rpc, next(_date_paths(rpc.descriptor)), (10000, 13, 32), 0)[:-1]):
            code = await call_raw(callers.customer, rpc, payload)
            assert code == grpc.StatusCode.PERMISSION_DENIED, f"{rpc.name} {payload!r}: {code.name}"
