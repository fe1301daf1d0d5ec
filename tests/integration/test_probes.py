"""Kubernetes' probes on gRPC health: "liveness" while the process runs, "readiness" while what it
needs answers (its database, the event bus, the contexts it imports from other processes)."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.config import Settings
from mesh.embedded import start_embedded, start_process
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from services.account.module import AccountModule
from tests.conftest import ADMIN_PASSWORD

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(target: str, service: str) -> int:
    async with aio.insecure_channel(target) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(answer.status)


def _nobody_listens() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_whole_bank_is_live_and_ready(tmp_path: Path) -> None:
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD))
    try:
        assert bank.readiness is not None and await bank.readiness.check()
        assert [await _health(bank.target, s) for s in ("liveness", "readiness", "")] == [SERVING] * 3
    finally:
        await bank.stop(grace=0.5)


async def test_a_process_whose_imported_context_is_unreachable_is_live_but_not_ready(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD, addresses={"customer": _nobody_listens()})
    account = await start_process(settings, [AccountModule])
    try:
        assert account.readiness is not None and not await account.readiness.check()
        assert account.readiness.failing == ["context customer"]
        assert await _health(account.target, "liveness") == SERVING
        assert await _health(account.target, "readiness") == NOT_SERVING
    finally:
        await account.stop(grace=0.5)


async def test_a_port_another_bank_holds_is_refused_not_shared(tmp_path: Path) -> None:
    first = await start_embedded(Settings(data_dir=tmp_path / "a", port=0, admin_password=ADMIN_PASSWORD))
    try:
        port = int(first.target.rsplit(":", 1)[1])
        with pytest.raises(OSError):  # with SO_REUSEPORT both would listen, each taking some of the calls
            await start_embedded(Settings(data_dir=tmp_path / "b", port=port, admin_password=ADMIN_PASSWORD))
    finally:
        await first.stop(grace=0.5)


async def test_the_health_port_answers_probes_in_plaintext_and_serves_nothing_else(tmp_path: Path) -> None:
    """The kubelet's probes take no certificate: a process serves its health answers alone on a
    plaintext port of their own (beside a port that may demand mutual TLS), the same answers as
    its main port; the process's own RPCs find no such method there."""
    settings = Settings(
        data_dir=tmp_path, port=0, health_port=0, admin_password=ADMIN_PASSWORD, addresses={"customer": _nobody_listens()}
    )
    account = await start_process(settings, [AccountModule])
    try:
        assert account.server.health_port
        probes = f"127.0.0.1:{account.server.health_port}"
        assert [await _health(probes, s) for s in ("liveness", "readiness")] == [SERVING, NOT_SERVING]
        async with aio.insecure_channel(probes) as channel:
            with pytest.raises(aio.AioRpcError) as refused:
                await agrpc.AccountServiceStub(channel).GetAccount(apb.GetAccountRequest(account_id="acc_1"), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await account.stop(grace=0.5)
    with pytest.raises(aio.AioRpcError):  # stopped with the process
        await _health(probes, "liveness")
