"""The gRPC platform on real servers: propagation, error mapping, health during shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import PreconditionFailed
from common.grpc.call_context import REQUEST_ID_HEADER
from common.grpc.channels import ChannelPool
from common.grpc.server import GrpcServer
from tests.grpc_assert import error_reason, rpc_error


def _raw_service(name: str, **methods: object) -> grpc.GenericRpcHandler:
    handlers = {m: grpc.unary_unary_rpc_method_handler(fn) for m, fn in methods.items()}
    return grpc.method_handlers_generic_handler(name, handlers)


@pytest.fixture
async def probe() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """Server B: records the request id and the deadline each call arrives with."""
    seen: list[dict[str, object]] = []

    async def look(request: bytes, context: aio.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        seen.append({"request_id": metadata.get(REQUEST_ID_HEADER), "remaining": context.time_remaining()})
        return b"seen"

    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.add_handlers(_raw_service("test.Probe", Look=look))
    await server.start()
    yield f"127.0.0.1:{port}", seen
    await server.stop(0)


@pytest.fixture
async def relay(probe: tuple[str, list[dict[str, object]]]) -> AsyncIterator[str]:
    """Server A: every call makes one outgoing call to B through the platform's channel."""
    pool = ChannelPool({"probe": probe[0]})

    async def call(request: bytes, context: aio.ServicerContext) -> bytes:
        look = pool.channel("probe").unary_unary("/test.Probe/Look")
        return await look(request)

    async def fail(request: bytes, context: aio.ServicerContext) -> bytes:
        if request == b"rule":
            raise PreconditionFailed("ACCOUNT_FROZEN", "the account is frozen", {"account_id": "acc_1"})
        raise RuntimeError("database password is hunter2")

    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.add_handlers(_raw_service("test.Relay", Call=call, Fail=fail))
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)
    await pool.close()


async def test_request_id_and_deadline_reach_the_next_hop(relay: str, probe: tuple[str, list[dict[str, object]]]) -> None:
    async with aio.insecure_channel(relay) as channel:
        call = channel.unary_unary("/test.Relay/Call")
        await call(b"x", timeout=5.0, metadata=((REQUEST_ID_HEADER, "corr-123"),))
        await call(b"y")
    with_deadline, without = probe[1]
    assert with_deadline["request_id"] == "corr-123"
    remaining = with_deadline["remaining"]
    # grpc encodes timeouts with limited precision, so allow a few ms of rounding up.
    assert isinstance(remaining, float) and 3.0 < remaining <= 5.05, "the caller's deadline travels on"
    assert isinstance(without["request_id"], str) and len(without["request_id"]) == 32, "one is made when missing"
    assert without["remaining"] is None, "no deadline is invented"


async def test_streaming_calls_carry_the_token_request_id_and_deadline(
    relay: str, probe: tuple[str, list[dict[str, object]]]
) -> None:
    """grpc.aio files a client interceptor under one call kind only: streams need their own."""
    from common.grpc.client import bearer_channel

    async def stream(request: bytes, context: aio.ServicerContext):
        metadata = dict(context.invocation_metadata() or ())
        yield f"{metadata.get('authorization')}|{metadata.get(REQUEST_ID_HEADER)}|{context.time_remaining() is not None}".encode()

    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.add_handlers(
        grpc.method_handlers_generic_handler("test.Stream", {"Echo": grpc.unary_stream_rpc_method_handler(stream)})
    )
    await server.start()
    try:
        async with bearer_channel(f"127.0.0.1:{port}", "tok") as channel:
            call = channel.unary_stream("/test.Stream/Echo")(b"", timeout=5, metadata=((REQUEST_ID_HEADER, "corr-9"),))
            assert [m async for m in call] == [b"Bearer tok|corr-9|True"]
    finally:
        await server.stop(0)


async def test_app_errors_map_to_status_and_bugs_leak_nothing(relay: str) -> None:
    async with aio.insecure_channel(relay) as channel:
        fail = channel.unary_unary("/test.Relay/Fail")
        info = await error_reason(fail(b"rule"), grpc.StatusCode.FAILED_PRECONDITION)
        assert info.reason == "ACCOUNT_FROZEN" and info.metadata["account_id"] == "acc_1"
        err = await rpc_error(fail(b"bug"), grpc.StatusCode.INTERNAL)
        assert "hunter2" not in (err.details() or "")


async def test_health_turns_not_serving_when_shutdown_starts(probe: tuple[str, list[dict[str, object]]]) -> None:
    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.add_handlers(_raw_service("test.Idle", Nap=lambda request, context: asyncio.sleep(0.5, b"z")))
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = asyncio.ensure_future(channel.unary_unary("/test.Idle/Nap")(b""))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(server.stop(grace=2))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await in_flight == b"z", "in-flight calls finish during the grace period"
        await stopping


async def test_client_and_bidi_streams_are_guarded_like_the_rest() -> None:
    """The registration-time interceptor returned client-streaming and bidi handlers unwrapped: no
    token was asked for (fail-open). They are authenticated, observed and mapped now."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from common.grpc.identity import BearerAuthenticator
    from common.security.context import ADMIN, SecurityContext, current_caller
    from common.security.tokens import TokenSettings, TokenVerifier, issue

    async def total(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> bytes:
        assert current_caller().has_role(ADMIN)
        return str(sum([len(r) async for r in requests])).encode()

    async def echo(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> AsyncIterator[bytes]:
        async for request in requests:
            if request == b"refuse":
                raise PreconditionFailed("REFUSED", "refused mid-stream")
            yield request

    key, settings = Ed25519PrivateKey.generate(), TokenSettings("test", "test")
    server = GrpcServer()
    port = server.bind("127.0.0.1:0")
    server.require_authentication(BearerAuthenticator(TokenVerifier(key.public_key(), settings)))
    server.add_handlers(
        grpc.method_handlers_generic_handler(
            "test.Streams",
            {"Total": grpc.stream_unary_rpc_method_handler(total), "Echo": grpc.stream_stream_rpc_method_handler(echo)},
        )
    )
    await server.start()
    token = issue(key, settings, SecurityContext("usr_1", "admin", (ADMIN,)))[0]
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            summed, echoed = channel.stream_unary("/test.Streams/Total"), channel.stream_stream("/test.Streams/Echo")
            await rpc_error(summed(iter([b"ab"])), grpc.StatusCode.UNAUTHENTICATED)
            with pytest.raises(aio.AioRpcError) as anonymous:
                async for _ in echoed(iter([b"x"])):
                    pass
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            authorized = (("authorization", f"Bearer {token}"),)
            assert await summed(iter([b"ab", b"cde"]), metadata=authorized) == b"5"
            got = []
            with pytest.raises(aio.AioRpcError) as refused:
                async for answer in echoed(iter([b"one", b"refuse", b"never"]), metadata=authorized):
                    got.append(answer)
            assert (
                got == [b"one"]
                and (await error_reason(_raise(refused.value), grpc.StatusCode.FAILED_PRECONDITION)).reason == "REFUSED"
            )
    finally:
        await server.stop(0)


async def _raise(error: Exception) -> None:
    raise error
