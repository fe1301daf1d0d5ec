"""Consumer contracts (tests/contract/consumer_contracts.py) replayed against the real providers,
and checked to cover every provider RPC the consumers' code calls."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import aio

from common.config import Settings
from common.di import context_spec
from common.grpc.client import bearer_channel
from common.grpc.identity import SUBJECT_HEADER
from common.grpc.services import service_of_stub
from common.security.component import Security
from common.security.secrets import shared_key
from mesh.embedded import ALL_MODULES, RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from services.velocitypay.simulator import MEMBER_KEY_HEADER
from tests.bank_helpers import Bank, eur
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.contract.consumer_contracts import INTERACTIONS, Interaction
from tests.grpc_assert import error_reason, rpc_error
from tests.rpc_catalog import Rpc, served_rpcs
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

_keys = itertools.count()
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


async def _given(state: str, channel: aio.Channel, key: str, consumer: Metadata, by: str) -> dict[str, str]:
    """Sets up a provider state through the provider's own API (holds placed by the consumer `by`,
    as it places them: payment's into the clearing account); returns the placeholders."""
    bank = Bank(channel)
    if state == "nothing":
        return {}
    if state == "a network settlement":
        await vgrpc.PaymentNetworkServiceStub(channel).SubmitPayment(
            vpb.SubmitPaymentRequest(
                payment_id=f"{key}-settled",
                beneficiary_iban="DE89370400440532013000",
                beneficiary_name="Max",
                currency_code="EUR",
                amount="1.00",
            ),
            metadata=consumer,
        )
        return {}
    if state == "a relationship manager":
        user = await igrpc.IdentityServiceStub(channel).CreateUser(
            ipb.CreateUserRequest(
                request_id=f"{key}-user",
                username=f"rm-{key}",
                password="a-long-password-1",
                roles=[ipb.ROLE_RELATIONSHIP_MANAGER],
            )
        )
        return {"user_id": user.user.user_id}
    customer = await bank.verified_customer(key)
    if state == "a verified customer":
        return {"customer_id": customer}
    if state == "a funded savings account":
        savings = await bank.open(customer, key)
        await bank.deposit(savings, "5000.00", key)
        return {"account_id": savings}
    account = (await bank.default_account(customer)).account_id
    await bank.deposit(account, "500.00", key)
    if state == "a funded account":
        return {"account_id": account}
    payee = "acc_CLEARING_EUR" if by == "payment" else await bank.open(customer, f"{key}-payee")
    hold = (
        await bank.accounts.PlaceHold(
            apb.PlaceHoldRequest(
                request_id=f"{key}-given",
                debit_account_id=account,
                credit_account_id=payee,
                amount=eur("10.00"),
                description="given",
            ),
            metadata=consumer,
        )
    ).hold.hold_id
    if state == "a released hold":
        await bank.accounts.ReleaseHold(
            apb.ReleaseHoldRequest(request_id=f"{key}-given-release", hold_id=hold), metadata=consumer
        )
    if state in ("a captured hold", "a reversed transfer"):
        transfer = (
            await bank.accounts.CaptureHold(
                apb.CaptureHoldRequest(request_id=f"{key}-given-capture", hold_id=hold), metadata=consumer
            )
        ).transfer
        if state == "a reversed transfer":
            await bank.accounts.ReverseTransfer(
                apb.ReverseTransferRequest(request_id=f"{key}-given-reverse", transfer_id=transfer.transfer_id, reason="given"),
                metadata=consumer,
            )
        return {"account_id": account, "hold_id": hold, "transfer_id": transfer.transfer_id}
    return {"account_id": account, "hold_id": hold}


def _filled(template: object, values: dict[str, str]) -> Any:
    text = json.dumps(template)
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    assert not re.search(r"\{[a-z_]+\}", text), f"unfilled placeholder in {text}"
    return json.loads(text)


def _relied_on_field_is_set(message: Message, path: str) -> bool:
    """The field exists in the provider's schema; a message or string field is also set (of a
    repeated field: its first element)."""
    for part in path.split("."):
        field = message.DESCRIPTOR.fields_by_name.get(part)
        if field is None:
            return False
        value = getattr(message, part)
        if field.is_repeated:
            if not value:
                return False
            value = value[0]
            if field.type != field.TYPE_MESSAGE:
                return True
            message = value
        elif field.type == field.TYPE_MESSAGE:
            if not message.HasField(part):
                return False
            message = value
        elif field.type == field.TYPE_STRING:
            return bool(value)
    return True


async def _replay(channel: aio.Channel, rpc: Rpc, interaction: Interaction, values: dict[str, str], consumer: Metadata) -> None:
    request = json_format.ParseDict(_filled(interaction.request, values), rpc.request())
    call: Any = channel.unary_unary(
        rpc.path, request_serializer=rpc.request.SerializeToString, response_deserializer=rpc.response.FromString
    )
    if rpc.server_streaming:  # the consumer reads the stream to its end: the last message is its answer
        stream = channel.unary_stream(
            rpc.path, request_serializer=rpc.request.SerializeToString, response_deserializer=rpc.response.FromString
        )

        async def last(request: Message, metadata: Metadata) -> Any:
            return [answer async for answer in stream(request, metadata=metadata)][-1]

        call = last
    if interaction.reason:
        info = await error_reason(call(request, metadata=consumer), grpc.StatusCode[interaction.expect])
        assert info.reason == interaction.reason, (interaction, info.reason)
        return
    if interaction.expect != "OK":
        await rpc_error(call(request, metadata=consumer), grpc.StatusCode[interaction.expect])
        return
    response = await call(request, metadata=consumer)
    missing = [path for path in interaction.relies_on if not _relied_on_field_is_set(response, path)]
    assert not missing, f"{interaction.consumer} relies on {missing} of {interaction.method}"


def _as_consumer(bank: RunningBank, consumer: str, provider: str, admin_token: str) -> Metadata:
    """The headers of the consumer's calls: its identity, acting for an admin; to the outside world,
    the bank's member key."""
    if provider == "velocitypay":
        return ((MEMBER_KEY_HEADER, shared_key(bank.contexts["infrastructure"].resolve(Settings).member_key_path())),)
    token = bank.contexts["infrastructure"].resolve(Security).service_token(consumer)
    return (("authorization", f"Bearer {token}"), (SUBJECT_HEADER, admin_token))


async def test_every_interaction_holds_against_the_real_provider(bank: RunningBank) -> None:
    rpcs = {rpc.path: rpc for rpc in await asyncio.to_thread(served_rpcs, bank.target)}
    token = await issue_token(bank.target)
    async with bearer_channel(bank.target, token) as channel, aio.insecure_channel(bank.target) as raw:
        for interaction in INTERACTIONS:
            key = f"cc{next(_keys)}"
            rpc = next(
                r
                for path, r in rpcs.items()
                if path.endswith(f".{interaction.method}") or path.endswith(f"/{interaction.method}")
            )
            consumer = _as_consumer(bank, interaction.consumer, interaction.provider, token)
            values = {"key": key, **await _given(interaction.given, channel, key, consumer, interaction.consumer)}
            await _replay(raw if consumer else channel, rpc, interaction, values, consumer)


def _called_methods(consumer: str) -> set[tuple[str, str]]:
    """(provider, Service/Rpc) for every RPC the consumer imports (its stubs offer no other)."""
    spec = next(context_spec(m) for m in ALL_MODULES if context_spec(m).name == consumer)
    called = set()
    for imported in spec.imports:
        service = service_of_stub(imported.type)
        for method in imported.methods if service is not None else ():
            called.add((imported.from_context, f"{service.descriptor.name}/{method}"))
    return called


def test_every_provider_rpc_a_consumer_calls_has_a_contract() -> None:
    declared = {(i.consumer, i.provider, i.method) for i in INTERACTIONS}
    for module in ALL_MODULES:
        consumer = context_spec(module).name
        for provider, method in _called_methods(consumer):
            assert (consumer, provider, method) in declared, f"{consumer} calls {provider} {method} without a consumer contract"
