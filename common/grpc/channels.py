"""Channels to other contexts, and the RemoteImports that binds imported stubs to them.

One channel per target address, created once (inside the running loop) and shared by every stub
that calls that address; stubs are created once per (stub type, context). Nothing is created per
call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from grpc import aio

from common.grpc.inprocess import InProcessChannel, LocalHandlers
from common.grpc.interceptors import outgoing_context_interceptors
from common.grpc.services import service_of_stub, services_of_servicer

# Round robin over the addresses of a target (the replicas of a context); an address whose health
# is not SERVING is skipped; a call that failed with UNAVAILABLE (a replica went away) is retried,
# on another replica. Retrying is safe for callers whose every state change is idempotent.
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{"name": [{}], "retryPolicy": {
        "maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "0.5s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]}}],
})  # fmt: skip
# Keepalive and message limits that suit a service mesh on a LAN, and the policy above.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, object], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.service_config", SERVICE_CONFIG),
)


_IN_PROCESS = "inprocess:"  # the key of the one in-process channel among the pool's channels


class UnknownAddressError(LookupError):
    """No address is configured for a context that code wants to call."""


class ChannelPool:
    """Implements common.di.RemoteImports over gRPC channels.

    `addresses` maps a context name to a gRPC target ("127.0.0.1:50051", "dns:///account:7000").
    Contexts named in `colocated` run in this process: their stubs get an in-process channel to
    `local` (the handlers of this process's server) instead of a socket.
    """

    def __init__(
        self,
        addresses: Mapping[str, str],
        *,
        interceptors: Sequence[aio.ClientInterceptor] | None = None,
        options: Sequence[tuple[str, object]] = DEFAULT_CHANNEL_OPTIONS,
        local: LocalHandlers | None = None,
        colocated: Iterable[str] = (),
    ) -> None:
        self._addresses = dict(addresses)
        self._colocated = frozenset(colocated) if local is not None else frozenset()
        self._local = local
        self._interceptors = list(interceptors) if interceptors is not None else outgoing_context_interceptors()
        self._options = list(options)
        self._channels: dict[str, aio.Channel | InProcessChannel] = {}
        self._stubs: dict[tuple[type, str], object] = {}

    def serves(self, exported: type, wanted: type) -> bool:
        stub_service = service_of_stub(wanted)
        return stub_service is not None and any(
            binding.full_name == stub_service.full_name for binding in services_of_servicer(exported)
        )

    def channel(self, context: str) -> aio.Channel | InProcessChannel:
        if context in self._colocated:
            return self._in_process()
        target = self._addresses.get(context)
        if target is None:
            raise UnknownAddressError(
                f"no address configured for context '{context}' (configured: "
                f"{', '.join(sorted(self._addresses)) or 'none'})"
            )
        channel = self._channels.get(target)
        if channel is None:
            channel = aio.insecure_channel(target, options=self._options, interceptors=self._interceptors)
            self._channels[target] = channel
        return channel

    def _in_process(self) -> InProcessChannel:
        channel = self._channels.get(_IN_PROCESS)
        if channel is None:
            assert self._local is not None
            channel = self._channels[_IN_PROCESS] = InProcessChannel(self._local, self._interceptors)  # type: ignore[assignment]
        return channel  # type: ignore[return-value]

    def bind(self, wanted: type, context: str) -> object:
        key = (wanted, context)
        stub = self._stubs.get(key)
        if stub is None:
            stub = wanted(self.channel(context))
            self._stubs[key] = stub
        return stub

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()
