"""The servicer's side of a colocated call: what a handler sees of it (metadata, deadline,
status, trailing metadata, the stream it writes to), as gRPC's server would show it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc import aio

Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None


def rpc_error(code: grpc.StatusCode, details: str, trailing: aio.Metadata | None = None) -> aio.AioRpcError:
    """The caller's view of a status: an AioRpcError, as a channel raises it."""
    return aio.AioRpcError(code, aio.Metadata(), trailing or aio.Metadata(), details)


def copy_message(serialize: Serializer, deserialize: Deserializer, message: Any) -> Any:
    """A message as the other side would receive it: through its serializer, never shared."""
    data = serialize(message) if serialize else message
    return deserialize(data) if deserialize else data


class ServicerContext:
    """What a handler sees of its call (the subset of aio.ServicerContext a handler may use)."""

    def __init__(
        self,
        metadata: aio.Metadata,
        deadline: float | None,
        stream: asyncio.Queue[Any] | None = None,
        serialize: Serializer = None,
        deserialize: Deserializer = None,
        auth: Mapping[str, list[bytes]] | None = None,
        address: str = "inprocess",
    ) -> None:
        self._metadata = tuple(metadata)
        self._address = address
        self._auth = dict(auth or {})
        self._deadline = deadline
        self._stream = stream
        self._serialize, self._deserialize = serialize, deserialize
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def peer(self) -> str:
        return self._address

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Sequence[tuple[str, Any]] = ()) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing_metadata)
        raise aio.AbortError()

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    async def send_initial_metadata(self, initial_metadata: Sequence[tuple[str, Any]]) -> None:
        return None

    async def write(self, message: Any) -> None:
        if self._stream is None:
            raise RuntimeError("write() on a unary call")
        await self._stream.put(copy_message(self._serialize, self._deserialize, message))

    def cancelled(self) -> bool:
        return False

    def auth_context(self) -> dict[str, list[bytes]]:
        """What a TLS server would read from the peer's certificate: the calling context's
        identity, which the channel of that context carries."""
        return dict(self._auth)

    def set_compression(self, compression: grpc.Compression) -> None:
        return None

    def disable_next_message_compression(self) -> None:
        return None

    def status_error(self) -> aio.AioRpcError | None:
        """The caller's error for the status the handler set, or None when it is OK."""
        if self._code is None or self._code == grpc.StatusCode.OK:
            return None
        return rpc_error(self._code, self._details or "", aio.Metadata(*self._trailing))
