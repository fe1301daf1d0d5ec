"""Every list a request carries is bounded by its contract, and no refusal outgrows what a client
can read. A 2000-entry opt-out list once made 2000 field violations, whose trailers overflowed
gRPC's metadata limit: the client saw RESOURCE_EXHAUSTED, not INVALID_ARGUMENT. Now every
repeated field of every request message (found by reflection, nested ones included) declares
`max_items` (a field mask `max_paths`), and the platform caps the details it sends (the violations
that fit, then one that counts the rest).
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2
from grpc import aio

import ogpgy
from buf.validate import validate_pb2
from common.config import Settings
from common.grpc.client import bearer_channel
from common.grpc.status import rich_status, unpack_detail
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.type.v1 import money_pb2, rules_pb2
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.rpc_catalog import Rpc, served_rpcs

HUGE = 2000
MORE_VIOLATIONS = "TOO_MANY_VIOLATIONS"  # the reason of the violation that counts those not listed
FIELD_MASK = "google.protobuf.FieldMask"


@dataclass(frozen=True)
class ListField:
    """A repeated field reachable from a request: its path of fields, and its declared bound."""

    path: tuple[FieldDescriptor, ...]
    bound: int | None

    @property
    def name(self) -> str:
        return ".".join(f.name for f in self.path)


def _contract_messages() -> list[Descriptor]:
    """Every request message of the bank's services, from the generated code (which carries the
    field rules as options)."""
    for module in pkgutil.walk_packages(ogpgy.__path__, "ogpgy."):
        if module.name.endswith("_service_pb2"):
            importlib.import_module(module.name)
    pool = descriptor_pool.Default()
    services = [pool.FindServiceByName(f"ogpgy.{c}.v1.{c.title()}Service") for c in _CONTEXTS]
    return [method.input_type for service in services for method in service.methods]


_CONTEXTS = ("account", "customer", "identity", "interest", "lending", "notification", "payment")


def _bound(field: FieldDescriptor) -> int | None:
    rules = field.GetOptions().Extensions[validate_pb2.field]
    if field.message_type is not None and field.message_type.full_name == FIELD_MASK:
        mask = rules.field_mask
        return mask.Extensions[rules_pb2.max_paths] if mask.HasExtension(rules_pb2.max_paths) else None
    return rules.repeated.max_items if rules.repeated.HasField("max_items") else None


def list_fields(message: Descriptor, path: tuple[FieldDescriptor, ...] = ()) -> Iterator[ListField]:
    """The repeated fields under `message` (a field mask counts as a list of paths)."""
    for field in message.fields:
        here = (*path, field)
        kind = field.message_type
        if field.is_repeated or (kind is not None and kind.full_name == FIELD_MASK):
            yield ListField(here, _bound(field))
        if kind is not None and not kind.full_name.startswith("google.") and kind not in {f.message_type for f in path}:
            yield from list_fields(kind, here)


def _all_list_fields() -> dict[str, ListField]:
    return {f"{m.name}.{f.name}": f for m in _contract_messages() for f in list_fields(m)}


def test_every_list_a_request_carries_declares_its_bound() -> None:
    fields = _all_list_fields()
    assert len(fields) >= 9, sorted(fields)  # tiers, charges, lines, roles, opt-outs, address lines...
    unbounded = sorted(name for name, f in fields.items() if f.bound is None)
    assert not unbounded, f"repeated request fields without max_items (or max_paths): {unbounded}"


def _filled(rpc: Rpc, field: ListField, count: int) -> bytes:
    """A request (of the served message type) whose list at `field` has `count` entries, each
    parent list one entry; nothing else set."""
    request = message_factory.GetMessageClass(field.path[0].containing_type)()
    target: Any = request
    for parent in field.path[:-1]:
        target = getattr(target, parent.name).add() if parent.is_repeated else getattr(target, parent.name)
    leaf = field.path[-1]
    entries: Any = getattr(target, leaf.name)
    if leaf.message_type is not None and leaf.message_type.full_name == FIELD_MASK:
        entries.paths.extend(f"path{i}" for i in range(count))
    elif leaf.message_type is not None:
        for _ in range(count):
            entries.add()
    elif leaf.type == FieldDescriptor.TYPE_STRING:
        entries.extend(f"entry-{i}" for i in range(count))
    else:
        entries.extend([1] * count)  # an enum's first defined value, or a number
    payload: bytes = request.SerializeToString()
    assert rpc.request.FromString(payload).ByteSize() == len(payload), "the served message is the contract's"
    return payload


async def _refusal(channel: aio.Channel, rpc: Rpc, payload: bytes) -> grpc.aio.AioRpcError:
    try:
        if rpc.server_streaming:
            async for _ in channel.unary_stream(rpc.path)(payload, timeout=30):
                pass
        else:
            await channel.unary_unary(rpc.path)(payload, timeout=30)
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError(f"{rpc.name}: {len(payload)} bytes were accepted")


def _violations(error: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code()}: {(error.details() or '')[:200]}"
    status = rich_status(error)
    assert status is not None, "no google.rpc.Status details"
    bad = unpack_detail(status, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest) and bad.field_violations, "no BadRequest a client can read"
    return list(bad.field_violations)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The contract's rules do not depend on the engine: SQLite only."""
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


@pytest.fixture
async def admin(bank: RunningBank) -> AsyncIterator[aio.Channel]:
    async with bearer_channel(bank.target, await issue_token(bank.target)) as channel:
        yield channel


async def test_a_list_over_its_bound_is_invalid_argument_with_details_a_client_reads(
    bank: RunningBank, admin: aio.Channel
) -> None:
    """max + 1 entries, and 2000 (or max + 1 where the bound is larger: PlaceHolds takes 10,000), in every list of every served request: INVALID_ARGUMENT naming the
    list (never RESOURCE_EXHAUSTED, never INTERNAL), sent as the first admin, who passes every gate."""
    rpcs = {rpc.descriptor.full_name: rpc for rpc in await asyncio.to_thread(served_rpcs, bank.target)}  # off the server's loop
    tried = []
    for name, field in _all_list_fields().items():
        rpc = rpcs[field.path[0].containing_type.full_name]
        for count in sorted({(field.bound or 0) + 1, max(HUGE, (field.bound or 0) + 1)}):  # 2000 is over most bounds
            violations = _violations(await _refusal(admin, rpc, _filled(rpc, field, count)))
            named = {re.sub(r"\[[^]]*\]", "", v.field) for v in violations}
            assert field.name in named, f"{name} with {count} entries: {sorted(named)[:5]}"
            tried.append((name, count))
    assert len(tried) >= 18, tried


def _bad_charges() -> apb.PostChargesRequest:
    """The most a PostCharges request may carry, every charge wrong in every field: thousands of
    violations, each within the contract's bounds."""
    line = apb.ChargeLine(internal_account=apb.INTERNAL_ACCOUNT_UNSPECIFIED, amount=money_pb2.Money(currency_code="x"))
    charge = apb.ChargeOrder(request_id="!", account_id="x", lines=[line] * 8, description="\n")
    return apb.PostChargesRequest(charges=[charge] * 500)


async def test_thousands_of_violations_answer_the_first_ones_and_count_the_rest(admin: aio.Channel) -> None:
    error = await _refusal(
        admin, _rpc_of(apb.DESCRIPTOR.services_by_name["AccountService"], "PostCharges"), _bad_charges().SerializeToString()
    )
    violations = _violations(error)
    assert violations[0].field.startswith("charges[0]."), violations[0]
    assert violations[-1].reason == MORE_VIOLATIONS, violations[-1]
    counted = re.match(r"and (\d+) more", violations[-1].description)
    assert counted is not None, violations[-1].description
    more = int(counted.group(1))
    assert more > 1000 and len(violations) < 100, (more, len(violations))
    message = error.details() or ""
    assert len(message.encode()) <= 512 and re.search(r"; and \d+ more$", message), message


def _rpc_of(service: Any, method: str) -> Rpc:
    found = service.methods_by_name[method]
    return Rpc(
        service.full_name,
        method,
        message_factory.GetMessageClass(found.input_type),
        message_factory.GetMessageClass(found.output_type),
        found.server_streaming,
    )
