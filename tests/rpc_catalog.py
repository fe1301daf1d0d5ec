"""Every RPC a running bank serves, found through gRPC server reflection (as a grpcurl user would),
with message classes built from the reflected descriptors; and a raw caller for any of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc import aio
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from common.grpc.tls import tls_options

INFRASTRUCTURE_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    request: type[Any]
    response: type[Any]
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def descriptor(self) -> Any:
        return self.request.DESCRIPTOR


def served_rpcs(target: str, tls: grpc.ChannelCredentials | None = None) -> list[Rpc]:
    """The RPCs of every business service the server at `target` lists through reflection
    (over TLS with `tls`: a process of a mesh with mutual TLS)."""
    channel = grpc.insecure_channel(target) if tls is None else grpc.secure_channel(target, tls, options=tls_options(target))
    with channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        rpcs = []
        for service_name in database.get_services():
            if service_name in INFRASTRUCTURE_SERVICES:
                continue
            service = pool.FindServiceByName(service_name)
            for method in service.methods:
                rpcs.append(_rpc(service_name, method))
    return rpcs


def _rpc(service: str, method: MethodDescriptor) -> Rpc:
    return Rpc(
        service,
        method.name,
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
        method.server_streaming,
    )


async def call_raw(
    channel: aio.Channel, rpc: Rpc, payload: bytes, metadata: tuple[tuple[str, str], ...] = (), deadline: float = 10
) -> grpc.StatusCode:
    """Sends `payload` as the request bytes (valid or not); returns the status code."""
    try:
        if rpc.server_streaming:
            call = channel.unary_stream(rpc.path, request_serializer=None, response_deserializer=None)(
                payload, metadata=metadata, timeout=deadline
            )
            async for _ in call:
                pass
        else:
            await channel.unary_unary(rpc.path, request_serializer=None, response_deserializer=None)(
                payload, metadata=metadata, timeout=deadline
            )
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
