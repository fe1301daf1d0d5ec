"""One way to serve any set of contexts: grpc.aio with health, reflection and interceptors."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.di import BuiltContexts
from common.grpc.inprocess import LocalHandlers
from common.grpc.interceptors import Authenticator, InterceptingRegistrar
from common.grpc.services import services_of_servicer

log = logging.getLogger("ogpgy.grpc.server")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Health services beside "" and each served service, for Kubernetes' grpc probes: "liveness" is
# SERVING while the process runs, "readiness" while what it needs answers (mesh/readiness.py).
LIVENESS, READINESS = "liveness", "readiness"
# A client keeps a connection this long at most, then connects again and resolves the name again:
# replicas added by scaling get their share. Calls under way (streams included) get the grace.
# A port another server holds is refused, not shared: two banks on one port would split the calls.
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 3_600_000),
    ("grpc.so_reuseport", 0),
    # The mesh's channels ping every 30 s (channels.DEFAULT_CHANNEL_OPTIONS); a server that takes
    # pings no oftener than its default 5 minutes answers the third with GOAWAY too_many_pings and
    # drops the connection (seen between contexts under a long watch stream): accept them at 20 s.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 20_000),
)


class GrpcServer:
    """A grpc.aio server for the exported servicers of some contexts.

    Lifecycle: `bind()` first (so the port is known before contexts build their channels),
    then `add_contexts()`, `start()`, and `stop()`, which turns every service NOT_SERVING before
    draining in-flight calls for `grace` seconds.
    """

    def __init__(
        self,
        *,
        interceptors: Sequence[aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = SERVER_OPTIONS,
        descriptors: bytes = b"",
    ) -> None:
        self._descriptors = descriptors  # a FileDescriptorSet with source info: reflection then serves the comments
        self._server = aio.server(interceptors=list(interceptors), options=list(options))
        self.local_handlers = LocalHandlers()  # what colocated callers reach without a socket
        self._registrar = InterceptingRegistrar(self._server, self.local_handlers)
        self._health = health.aio.HealthServicer()
        self._service_names: list[str] = []
        self._port: int | None = None
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._probes: aio.Server | None = None  # the health-only listener, when bound
        self.health_port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("bind() the server first")
        return self._port

    @property
    def service_names(self) -> list[str]:
        return list(self._service_names)

    def bind(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Listens on `address` ("127.0.0.1:0" picks a free port), with TLS when `credentials`
        are given; returns the port."""
        try:
            if credentials is None:
                self._port = self._server.add_insecure_port(address)
            else:
                self._port = self._server.add_secure_port(address, credentials)
        except RuntimeError as failed:  # grpc's way of saying the bind failed
            raise OSError(f"cannot listen on {address}: the address is in use or not this host's") from failed
        if self._port == 0:
            raise OSError(f"cannot listen on {address}")
        return self._port

    def bind_health(self, address: str) -> int:
        """Serves the same health answers, and nothing else, in plaintext on `address`: the
        kubelet's gRPC probes present no client certificate, so they cannot reach a mutual TLS
        port. Health says only whether the process is live and ready; every other method, and
        reflection, stays on the authenticated port. Returns the port."""
        # Unauthenticated callers may reach it: few streams per connection, few calls at once.
        self._probes = aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 16)], maximum_concurrent_rpcs=32
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._probes)
        try:
            port: int = self._probes.add_insecure_port(address)
        except RuntimeError as failed:
            raise OSError(f"cannot listen on {address} for health probes: the address is in use or not this host's") from failed
        if port == 0:
            raise OSError(f"cannot listen on {address} for health probes")
        self.health_port = port
        return port

    def require_authentication(self, authenticator: Authenticator) -> None:
        """Every RPC added from now on needs a valid token, except health, reflection and the
        methods a servicer lists in its PUBLIC_METHODS (e.g. IssueToken). Methods it lists in
        MESH_METHODS need a caller too, and any context may call them (the platform's own, e.g.
        the token revocations every process applies)."""
        self._registrar.authenticator = authenticator

    def allow_importers(self, importers: Mapping[str, frozenset[str]]) -> None:
        """From now on, a context's identity may call only the RPCs it imported (common.grpc.identity)."""
        self._registrar.importers = importers

    def add_servicer(self, servicer: Any) -> list[str]:
        """Registers a servicer under every proto service it implements."""
        bindings = services_of_servicer(type(servicer))
        if not bindings:
            raise TypeError(f"{type(servicer).__qualname__} implements no generated gRPC servicer")
        self._registrar.public_methods = frozenset(getattr(servicer, "PUBLIC_METHODS", ()))
        self._registrar.mesh_methods = frozenset(getattr(servicer, "MESH_METHODS", ()))
        for binding in bindings:
            binding.add_to_server(servicer, self._registrar)
            self._service_names.append(binding.full_name)
        return [b.full_name for b in bindings]

    def add_handlers(self, *handlers: Any) -> None:
        """Serves raw generic handlers (grpc.method_handlers_generic_handler) beside the contexts."""
        self._registrar.add_generic_rpc_handlers(handlers)

    def add_contexts(self, contexts: BuiltContexts | Iterable[Any]) -> None:
        """Serves every exported servicer of the given contexts."""
        instances: Iterable[Any] = contexts.values() if isinstance(contexts, BuiltContexts) else contexts
        for context in instances:
            for exported in context.exported_instances():
                if services_of_servicer(type(exported)):
                    self.add_servicer(exported)

    async def start(self) -> None:
        names = [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        pool = ReflectionPool(self._descriptors) if self._descriptors else None
        reflection.enable_server_reflection(names, self._server, pool=pool)
        await self._server.start()
        if self._probes is not None:
            await self._probes.start()
        self.local_handlers.open()
        for name in ["", LIVENESS, *self._service_names]:
            await self._health.set(name, SERVING)
        await self._health.set(READINESS, NOT_SERVING)  # until what the process needs has answered (set_ready)
        log.info("serving %s on port %s", ", ".join(self._service_names) or "nothing", self._port)

    async def set_ready(self, ready: bool) -> None:
        """The answer to the readiness probe (the process stays live and serves either way)."""
        await self._health.set(READINESS, SERVING if ready else NOT_SERVING)

    async def stop(self, grace: float = 5.0) -> None:
        await self._health.enter_graceful_shutdown()
        self.local_handlers.close()
        await self._server.stop(grace)
        if self._probes is not None:
            await self._probes.stop(0)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


class _CommentedFile:
    """A file descriptor as reflection serializes it, with its comments: protobuf's own
    CopyToProto leaves the source info out."""

    def __init__(self, file: Any, commented: Mapping[str, descriptor_pb2.FileDescriptorProto]) -> None:
        self._file = file
        self._commented = commented
        self.name: str = file.name

    @property
    def dependencies(self) -> list[_CommentedFile]:
        return [_CommentedFile(d, self._commented) for d in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        if self.name in self._commented:
            proto.CopyFrom(self._commented[self.name])
        else:
            self._file.CopyToProto(proto)


class ReflectionPool:
    """What server reflection asks of a descriptor pool, answered from `serialized_set` (a
    FileDescriptorSet with source info: `grpcurl describe` then shows the contracts' comments);
    anything the set lacks (health, reflection itself, google.rpc error details) comes from the
    generated code's pool, as it would without the set."""

    def __init__(self, serialized_set: bytes) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        files = descriptor_pb2.FileDescriptorSet.FromString(serialized_set).file
        for file in files:
            self._pool.Add(file)
        self._commented = {file.name: file for file in files}
        self._known = set(self._commented)

    def _add(self, file: Any) -> None:
        """A file of the default pool, its dependencies first."""
        if file.name in self._known:
            return
        for dependency in file.dependencies:
            self._add(dependency)
        self._pool.Add(descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb))
        self._known.add(file.name)

    def FindFileByName(self, name: str) -> _CommentedFile:
        if name not in self._known:
            self._add(descriptor_pool.Default().FindFileByName(name))
        return _CommentedFile(self._pool.FindFileByName(name), self._commented)

    def FindFileContainingSymbol(self, symbol: str) -> _CommentedFile:
        """The file of a message, service or enum, or of a method or field (found by its parent:
        a pool built from descriptors does not index members)."""
        name = symbol
        while True:
            try:
                return _CommentedFile(self._pool.FindFileContainingSymbol(name), self._commented)
            except KeyError:
                if "." not in name:
                    break
                name = name.rsplit(".", 1)[0]
        self._add(descriptor_pool.Default().FindFileContainingSymbol(symbol))
        return _CommentedFile(self._pool.FindFileContainingSymbol(symbol), self._commented)

    def FindMessageTypeByName(self, name: str) -> Any:
        self.FindFileContainingSymbol(name)
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Any) -> Any:
        return self._pool.FindAllExtensions(message)


def stop_signal() -> asyncio.Future[signal.Signals]:
    """A future resolved by the first SIGINT or SIGTERM: the cue for a graceful shutdown.

    Installed before the process announces it is ready, so that a signal sent right after the
    announcement is never lost to the default handler.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return received
