"""Client side helpers: a channel that sends a bearer token on every call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc import aio

from common.grpc.client_interceptors import call_details_interceptors
from common.grpc.identity import AUTHORIZATION
from common.grpc.tls import tls_options


def bearer_interceptors(token: str) -> list[aio.ClientInterceptor]:
    """Adds `authorization: Bearer <token>` to unary and streaming calls, unless a call brings its own."""
    header = f"Bearer {token}"

    def with_token(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        if AUTHORIZATION not in metadata:
            metadata.add(AUTHORIZATION, header)
        return aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)

    return call_details_interceptors(with_token)


def bearer_channel(target: str, token: str, tls: grpc.ChannelCredentials | None = None) -> aio.Channel:
    """A channel whose every call carries `token`: plaintext (loopback), or TLS with `tls`."""
    return open_channel(target, tls, interceptors=bearer_interceptors(token))


def open_channel(
    target: str,
    tls: grpc.ChannelCredentials | None = None,
    *,
    interceptors: list[aio.ClientInterceptor] | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> aio.Channel:
    """Plaintext without `tls` (loopback), else TLS."""
    if tls is None:
        return aio.insecure_channel(target, options=options, interceptors=interceptors)
    return aio.secure_channel(target, tls, options=[*(options or ()), *tls_options(target)], interceptors=interceptors)
