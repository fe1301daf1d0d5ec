"""Client side helpers: a channel that sends a bearer token on every call."""

from __future__ import annotations

from typing import Any

from grpc import aio

from common.grpc.interceptors import AUTHORIZATION


class BearerToken(aio.UnaryUnaryClientInterceptor, aio.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` unless the call brings its own."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def _with_token(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        if AUTHORIZATION not in metadata:
            metadata.add(AUTHORIZATION, self._header)
        return aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._with_token(client_call_details), request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._with_token(client_call_details), request)


def bearer_channel(target: str, token: str) -> aio.Channel:
    """An insecure (loopback/mesh) channel whose every call carries `token`."""
    return aio.insecure_channel(target, interceptors=[BearerToken(token)])
