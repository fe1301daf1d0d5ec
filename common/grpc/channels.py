"""Channels to other contexts, and the RemoteImports that binds imported stubs to them.

One channel per target address, created once (inside the running loop) and shared by every stub
that calls that address; stubs are created once per (stub type, context). Nothing is created per
call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence

import grpc
from grpc import aio

from common.di import ModuleContextImport
from common.grpc.client_interceptors import outgoing_context_interceptors
from common.grpc.identity import bind_stub
from common.grpc.inprocess import InProcessChannel, LocalHandlers
from common.grpc.services import service_of_stub, services_of_servicer
from common.grpc.tls import RenewingChannel, tls_options
from common.security.pki import spiffe_id

# Round robin over the addresses of a target (the replicas of a context); an address whose health
# is not SERVING is skipped; a call that failed with UNAVAILABLE (a replica went away) is retried,
# on another replica. Retrying is safe for callers whose every state change is idempotent.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
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
    `local` (the handlers of this process's server) instead of a socket, which carries the
    importing context's identity as a certificate would. `credentials` gives the token of an
    importing context's service identity, which its calls carry (where certificates do not say
    who is calling); `tls` the TLS credentials of an importing context's channels (None: plaintext).
    """

    def __init__(
        self,
        addresses: Mapping[str, str],
        *,
        interceptors: Sequence[aio.ClientInterceptor] | None = None,
        options: Sequence[tuple[str, object]] = DEFAULT_CHANNEL_OPTIONS,
        local: LocalHandlers | None = None,
        colocated: Iterable[str] = (),
        credentials: Callable[[str], str] | None = None,
        tls: Callable[[str], grpc.ChannelCredentials] | None = None,
    ) -> None:
        self._addresses = dict(addresses)
        self._colocated = frozenset(colocated) if local is not None else frozenset()
        self._local = local
        self._interceptors = list(interceptors) if interceptors is not None else outgoing_context_interceptors()
        self._options = list(options)
        self._credentials = credentials
        self._tls = tls
        self._channels: dict[tuple[str, object], aio.Channel | InProcessChannel | RenewingChannel] = {}
        self._stubs: dict[tuple[type, str, str, tuple[str, ...]], object] = {}

    def serves(self, exported: type, wanted: type) -> bool:
        stub_service = service_of_stub(wanted)
        return stub_service is not None and any(
            binding.full_name == stub_service.full_name for binding in services_of_servicer(exported)
        )

    def methods_of(self, wanted: type) -> tuple[str, ...] | None:
        binding = service_of_stub(wanted)
        return None if binding is None else tuple(m.name for m in binding.descriptor.methods)

    def channel(self, context: str, importer: str = "") -> aio.Channel | InProcessChannel | RenewingChannel:
        """The channel `importer`'s calls to `context` travel on: plaintext, shared by every
        importer; with TLS, the importer's own, on its current credentials."""
        if context in self._colocated:
            return self._in_process(importer)
        target = self._addresses.get(context)
        if target is None:
            raise UnknownAddressError(
                f"no address configured for context '{context}' (configured: {', '.join(sorted(self._addresses)) or 'none'})"
            )
        key = (target, importer if self._tls is not None else None)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = self._open(target, importer)
        return channel

    def _open(self, target: str, importer: str) -> aio.Channel | RenewingChannel:
        if self._tls is None:
            return aio.insecure_channel(target, options=self._options, interceptors=self._interceptors)
        options, tls = [*self._options, *tls_options(target)], self._tls
        return RenewingChannel(
            lambda credentials: aio.secure_channel(target, credentials, options=options, interceptors=self._interceptors),
            lambda: tls(importer),
        )

    def _in_process(self, importer: str) -> InProcessChannel | aio.Channel | RenewingChannel:
        channel = self._channels.get((_IN_PROCESS, importer))
        if channel is None:
            assert self._local is not None
            peer = spiffe_id("context", importer) if importer else ""
            channel = self._channels[(_IN_PROCESS, importer)] = InProcessChannel(self._local, self._interceptors, peer=peer)
        return channel

    def bind(self, imported: ModuleContextImport, importer: str, *, external: bool = False) -> object:
        """The stub `importer` imported: once per (stub, target, importer, methods), on the shared channel."""
        key = (imported.type, imported.from_context, importer, tuple(imported.methods))
        stub = self._stubs.get(key)
        if stub is None:
            token: Callable[[], str] | None = None
            if not external and self._credentials is not None:
                credentials = self._credentials
                token = lambda: credentials(importer)  # noqa: E731 - bound once, called per call
            channel = self.channel(imported.from_context, importer)
            stub = bind_stub(imported.type, channel, imported.methods, importer, token, relay=not external)
            self._stubs[key] = stub
        return stub

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()
