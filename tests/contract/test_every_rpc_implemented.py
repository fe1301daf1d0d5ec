"""Every RPC of every exported service is implemented: found through server reflection, called
with an empty request as an admin, none answers UNIMPLEMENTED (nor INTERNAL/UNKNOWN); and every
servicer class overrides every method of its proto (the generated base only says UNIMPLEMENTED)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.config import Settings
from common.grpc.services import services_of_servicer
from mesh.embedded import RunningBank
from tests.conftest import ADMIN_PASSWORD, issue_token
from tests.rpc_catalog import call_raw, served_rpcs

NEVER = {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


async def test_reflection_lists_every_exported_service_and_each_rpc_answers(bank: RunningBank) -> None:
    rpcs = await asyncio.to_thread(served_rpcs, bank.target)  # a blocking client: off the server's loop
    services = {rpc.service for rpc in rpcs}
    bindings = [b for ctx in bank.contexts.values() for e in ctx.exported_instances() for b in services_of_servicer(type(e))]
    assert services == {b.full_name for b in bindings}
    token = await issue_token(bank.target)
    answers = {}
    async with aio.insecure_channel(bank.target) as channel:
        for rpc in rpcs:
            answers[rpc.path] = await call_raw(channel, rpc, b"", metadata=(("authorization", f"Bearer {token}"),))
    assert len(answers) == sum(len(b.descriptor.methods) for b in bindings)
    assert not {path: code for path, code in answers.items() if code in NEVER}


def test_every_servicer_overrides_every_method_of_its_service(bank: RunningBank) -> None:
    for context in bank.contexts.values():
        for exported in context.exported_instances():
            for binding in services_of_servicer(type(exported)):
                for method in binding.descriptor.methods:
                    implemented = getattr(type(exported), method.name)
                    assert implemented is not getattr(binding.servicer_base, method.name), f"{binding.full_name}/{method.name}"
