"""Colocated calls keep gRPC's semantics: the same stub and the same assertions pass over a
loopback socket and over the in-process channel (deadlines, errors with details, the caller's
identity, metadata, copies of messages, server streams)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc import aio

from common.di import ModuleContextImport
from common.errors import NotFound, PermissionDenied
from common.grpc.call_context import REQUEST_ID_HEADER, remaining_time, request_id_var
from common.grpc.channels import ChannelPool
from common.grpc.identity import BearerAuthenticator
from common.grpc.inprocess import InProcessChannel, LocalHandlers
from common.grpc.server import GrpcServer
from common.security.context import ADMIN, CUSTOMER, SecurityContext, caller_var, current_caller
from common.security.tokens import TokenSettings, TokenVerifier, issue, issue_service
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.interest.v1 import interest_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc
from tests.grpc_assert import error_reason

SETTINGS = TokenSettings(audience="test", issuer="test")


class Probe(agrpc.AccountServiceServicer, igrpc.InterestServiceServicer):
    """Records what each handler saw of its call."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.returned: list[object] = []
        self.cancelled = asyncio.Event()

    async def GetAccount(self, request: apb.GetAccountRequest, context: aio.ServicerContext) -> apb.GetAccountResponse:
        self.seen.append(
            {
                "request": request,
                "caller": current_caller(),
                "request_id": request_id_var.get(),
                "remaining": remaining_time(),
                "peer_caller": caller_var.get(),
            }
        )
        if request.account_id == "acc_MISSING":
            raise NotFound("account", request.account_id)
        if request.account_id == "acc_FORBIDDEN":
            raise PermissionDenied("NOT_YOURS", "this account belongs to someone else", {"account_id": request.account_id})
        if request.account_id == "acc_SLOW":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        response = apb.GetAccountResponse(account=apb.Account(account_id=request.account_id))
        self.returned.append(response)
        return response

    async def ListInterestRuns(
        self, request: ipb.ListInterestRunsRequest, context: aio.ServicerContext
    ) -> ipb.ListInterestRunsResponse:
        raise NotImplementedError

    async def RunDailyInterest(
        self, request: ipb.RunDailyInterestRequest, context: aio.ServicerContext
    ) -> AsyncIterator[ipb.RunDailyInterestResponse]:
        for processed in range(3):
            yield ipb.RunDailyInterestResponse(run=ipb.InterestRun(processed=processed))
        raise PermissionDenied("STREAM_REFUSED", "refused after three messages", {})


class Wired(NamedTuple):
    probe: Probe
    pool: ChannelPool  # the channels of the context 'tester', with its identity
    key: Ed25519PrivateKey
    anonymous: ChannelPool  # channels that send no identity at all


IMPORTER = "tester"
ACCOUNT = ModuleContextImport(agrpc.AccountServiceStub, from_context="account", methods=["GetAccount"])
INTEREST = ModuleContextImport(igrpc.InterestServiceStub, from_context="interest", methods=["RunDailyInterest"])


@pytest.fixture(params=["loopback", "colocated"])
async def mesh(request: pytest.FixtureRequest) -> AsyncIterator[Wired]:
    """A server of the probe, and the channels of a context 'tester' that imported GetAccount and
    RunDailyInterest (with its identity), over a socket or in-process."""
    key = Ed25519PrivateKey.generate()
    probe = Probe()
    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.require_authentication(BearerAuthenticator(TokenVerifier(key.public_key(), SETTINGS)))
    server.allow_importers(
        {
            "/ogpgy.account.v1.AccountService/GetAccount": frozenset({IMPORTER}),
            "/ogpgy.interest.v1.InterestService/RunDailyInterest": frozenset({IMPORTER}),
        }
    )
    server.add_servicer(probe)
    await server.start()
    colocated = ["account", "interest"] if request.param == "colocated" else []
    pool = ChannelPool(
        {"account": f"127.0.0.1:{port}", "interest": f"127.0.0.1:{port}"},
        local=server.local_handlers,
        colocated=colocated,
        credentials=lambda context: issue_service(key, SETTINGS, context)[0],
    )
    anonymous = ChannelPool({"account": f"127.0.0.1:{port}"}, local=server.local_handlers, colocated=colocated)
    yield Wired(probe, pool, key, anonymous)
    await anonymous.close()
    await pool.close()
    await server.stop(0)


def _as(key: Ed25519PrivateKey, roles: tuple[str, ...], customer_id: str = "") -> SecurityContext:
    """Makes the current task act for a caller, as the server interceptor does for an incoming call."""
    caller = SecurityContext("usr_1", "someone", roles, customer_id)
    token, _ = issue(key, SETTINGS, caller)
    caller = SecurityContext(caller.user_id, caller.username, roles, customer_id, token)
    caller_var.set(caller)
    return caller


async def test_the_callers_identity_request_id_and_deadline_travel(mesh: Wired) -> None:
    probe, pool, key, _ = mesh
    _as(key, (CUSTOMER,), "cus_1")
    request_id_var.set("req-colocated-1")
    stub = pool.bind(ACCOUNT, IMPORTER)
    request = apb.GetAccountRequest(account_id="acc_1")
    response = await stub.GetAccount(request, timeout=5)
    seen = probe.seen[-1]
    assert seen["caller"].user_id == "usr_1" and seen["caller"].customer_id == "cus_1" and seen["caller"].roles == (CUSTOMER,)
    assert seen["caller"].service == IMPORTER and seen["caller"].via == (IMPORTER,), "the relaying context is known"
    assert seen["request_id"] == "req-colocated-1"
    assert 0 < seen["remaining"] <= 5
    assert seen["request"] == request and seen["request"] is not request, "the handler gets a copy"
    assert response == probe.returned[-1] and response is not probe.returned[-1], "the caller gets a copy"
    assert caller_var.get().customer_id == "cus_1", "nothing of the handler's context leaks back"


async def test_no_token_is_unauthenticated(mesh: Wired) -> None:
    stub = mesh.anonymous.bind(ACCOUNT, IMPORTER)
    info = await error_reason(stub.GetAccount(apb.GetAccountRequest(account_id="acc_1")), grpc.StatusCode.UNAUTHENTICATED)
    assert info.reason == "TOKEN_MISSING"


async def test_a_context_acting_alone_carries_no_subject(mesh: Wired) -> None:
    probe, pool, _, _ = mesh
    await pool.bind(ACCOUNT, IMPORTER).GetAccount(apb.GetAccountRequest(account_id="acc_1"))
    caller = probe.seen[-1]["caller"]
    assert caller.service == IMPORTER and not caller.has_subject and caller.roles == ()


async def test_an_rpc_the_context_did_not_import_is_refused(mesh: Wired) -> None:
    probe, pool, key, _ = mesh
    _as(key, (ADMIN,))
    stub = pool.bind(ModuleContextImport(agrpc.AccountServiceStub, from_context="account", methods=["GetAccount"]), "intruder")
    info = await error_reason(stub.GetAccount(apb.GetAccountRequest(account_id="acc_1")), grpc.StatusCode.PERMISSION_DENIED)
    assert info.reason == "RPC_NOT_IMPORTED" and not probe.seen, "refused before the handler ran, whoever the subject"
    with pytest.raises(AttributeError, match=r"did not import AccountServiceStub\.Deposit"):
        pool.bind(ACCOUNT, IMPORTER).Deposit  # noqa: B018 - the bound stub offers only what was imported


async def test_errors_keep_their_code_and_rich_details(mesh: Wired) -> None:
    _, pool, key, _ = mesh
    _as(key, (ADMIN,))
    stub = pool.bind(ACCOUNT, IMPORTER)
    with pytest.raises(aio.AioRpcError) as missing:
        await stub.GetAccount(apb.GetAccountRequest(account_id="acc_MISSING"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert any(k == "grpc-status-details-bin" for k, _ in missing.value.trailing_metadata())
    info = await error_reason(
        stub.GetAccount(apb.GetAccountRequest(account_id="acc_FORBIDDEN")), grpc.StatusCode.PERMISSION_DENIED
    )
    assert info.reason == "NOT_YOURS" and info.metadata["account_id"] == "acc_FORBIDDEN"


async def test_a_passed_deadline_is_deadline_exceeded_and_cancels_the_handler(mesh: Wired) -> None:
    probe, pool, key, _ = mesh
    _as(key, (ADMIN,))
    stub = pool.bind(ACCOUNT, IMPORTER)
    with pytest.raises(aio.AioRpcError) as late:
        await stub.GetAccount(apb.GetAccountRequest(account_id="acc_SLOW"), timeout=0.2)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(probe.cancelled.wait(), 5)


async def test_server_streams_deliver_messages_then_the_status(mesh: Wired) -> None:
    _, pool, key, _ = mesh
    _as(key, (ADMIN,))
    stub = pool.bind(INTEREST, IMPORTER)
    got = []
    with pytest.raises(aio.AioRpcError) as refused:
        async for answer in stub.RunDailyInterest(
            ipb.RunDailyInterestRequest(request_id="r"), metadata=((REQUEST_ID_HEADER, "s-1"),)
        ):
            got.append(answer.run.processed)
    assert got == [0, 1, 2]
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_answer_nobody_waits_for_is_dropped_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that ends in an error after its deadline, and a call whose caller never awaits
    it, are what a socket drops silently; the in-process channel must not log them as errors."""

    async def late(request: bytes, context: Any) -> bytes:
        try:
            await asyncio.sleep(1)
        finally:
            raise RuntimeError("late")  # as a handler cut off mid-write would

    handlers = LocalHandlers()
    handlers.add("/probe.Probe/Late", grpc.unary_unary_rpc_method_handler(late))
    handlers.open()
    call = InProcessChannel(handlers).unary_unary("/probe.Probe/Late")
    with pytest.raises(aio.AioRpcError) as cut:
        await call(b"x", timeout=0.05)
    assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    forgotten = call(b"y", timeout=0.05)  # never awaited
    await asyncio.sleep(0.3)
    del forgotten
    gc.collect()
    await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []
