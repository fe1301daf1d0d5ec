"""One loopback address in front of a distributed mesh, for the simulation's driver, which is written
for one target (an embedded bank): every call is relayed, bytes as they are, to the process that
serves its service, over the mesh's mutual TLS as its operator.

It is a plain relay, so that what the driver sees is what the process answered: no retries, the
caller's metadata (its bearer token) and deadline passed on, the status, message and google.rpc
details passed back; a call its caller cuts off is cut off upstream. While a process is down (a
kill -9), its calls fail UNAVAILABLE here as they would at the process's own address.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from grpc import aio

from common.grpc.client import open_channel

# A process killed and started again is reached within half a second, not after gRPC's backoff
# of up to two minutes: the relay stands for a client that keeps calling.
RECONNECT = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500), ("grpc.enable_retries", 0))
NOT_PASSED_ON = ("user-agent", "te", "content-type")


def _passed_on(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in metadata or () if not k.startswith((":", "grpc-")) and k not in NOT_PASSED_ON)


def _relay(channel: aio.Channel, method: str) -> Callable[[AsyncIterator[bytes], aio.ServicerContext], AsyncIterator[bytes]]:
    async def relay(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> AsyncIterator[bytes]:
        sent = [message async for message in requests]
        if len(sent) != 1:  # every business RPC takes one request
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the front relays one request, not {len(sent)}")
        call = channel.unary_stream(method)(
            sent[0], metadata=_passed_on(context.invocation_metadata()), timeout=context.time_remaining()
        )
        try:
            async for answer in call:
                yield answer
        except aio.AioRpcError as error:
            await context.abort(error.code(), error.details() or "", tuple(error.trailing_metadata() or ()))
        except asyncio.CancelledError:
            call.cancel()
            raise

    return relay


class _Router(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    def __init__(self, channels: Mapping[str, aio.Channel]) -> None:
        self.channels = channels  # service -> the channel to the process serving it

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method  # "/package.Service/Method"
        channel = self.channels.get(method.split("/")[1])
        return None if channel is None else grpc.stream_stream_rpc_method_handler(_relay(channel, method))


class Front:
    """The relay's server and its channels, one per process."""

    def __init__(self, routes: Mapping[str, str], tls: grpc.ChannelCredentials | None) -> None:
        self.routes, self.tls = routes, tls  # service -> the target of the process serving it
        self._server: aio.Server | None = None
        self._channels: dict[str, aio.Channel] = {}

    async def start(self) -> str:
        """Serves on a free loopback port; its target."""
        self._channels = {t: open_channel(t, self.tls, options=RECONNECT) for t in set(self.routes.values())}
        self._server = aio.server()
        self._server.add_generic_rpc_handlers((_Router({s: self._channels[t] for s, t in self.routes.items()}),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for channel in self._channels.values():
            await channel.close()
