"""A client of OgPgy Bank: one channel with the bank's defaults, its token acquired and renewed,
and every error of a unary call raised with its rich details."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from ogpgy.identity.v1.identity_service_pb2 import IssueTokenRequest
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from ogpgy.interest.v1.interest_service_pb2_grpc import InterestServiceStub
from ogpgy.lending.v1.lending_service_pb2_grpc import LendingServiceStub
from ogpgy.notification.v1.notification_service_pb2_grpc import NotificationServiceStub
from ogpgy.payment.v1.payment_service_pb2_grpc import PaymentServiceStub

# A call answered UNAVAILABLE is tried again, a little later each time: safe, since every state
# change is idempotent by request_id and every read has no effect.
RETRIES = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.2s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(RETRIES)),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
)
PUBLIC_METHODS = frozenset({"/ogpgy.identity.v1.IdentityService/IssueToken", "/ogpgy.identity.v1.IdentityService/GetSigningKeys"})
RENEW_BEFORE_SECONDS = 60.0
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str


class BankError(aio.AioRpcError):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    """A failed call with what the bank said about it: `reason` (ErrorInfo, UPPER_SNAKE, e.g.
    INSUFFICIENT_FUNDS), `metadata`, `field_violations` (BadRequest), `retry_after` (seconds, from
    RetryInfo) and the call's `request_id`."""

    def __init__(self, error: aio.AioRpcError) -> None:
        super().__init__(
            error.code(), error.initial_metadata(), error.trailing_metadata(), error.details(), error.debug_error_string()
        )
        self.reason = ""
        self.metadata: dict[str, str] = {}
        self.field_violations: list[FieldViolation] = []
        self.retry_after: float | None = None
        self.request_id = ""
        for key, value in error.trailing_metadata() or ():
            if key == "x-request-id":
                self.request_id = str(value)
            elif key == _DETAILS_KEY and isinstance(value, bytes):
                self._read_details(status_pb2.Status.FromString(value))

    def _read_details(self, status: status_pb2.Status) -> None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                self.reason, self.metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                self.field_violations = [FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                self.retry_after = retry.retry_delay.ToTimedelta().total_seconds()

    def __str__(self) -> str:
        return f"{self.code().name} {self.reason}: {self.details()}"


class _Token:
    """The bearer token, issued on first use and renewed a minute before it expires."""

    def __init__(self, channel: aio.Channel, username: str, password: str, audience: str) -> None:
        self._identity = IdentityServiceStub(channel)
        self._request = IssueTokenRequest(username=username, password=password, audience=audience)
        self._value, self._expires = "", 0.0
        self._lock = asyncio.Lock()

    async def header(self) -> tuple[str, str]:
        if time.time() > self._expires - RENEW_BEFORE_SECONDS:
            async with self._lock:
                if time.time() > self._expires - RENEW_BEFORE_SECONDS:
                    try:
                        issued = await self._identity.IssueToken(self._request)
                    except aio.AioRpcError as error:
                        raise BankError(error) from None
                    self._value, self._expires = issued.access_token, issued.expire_time.ToSeconds()
        return ("authorization", f"Bearer {self._value}")


def _with_token(details: aio.ClientCallDetails, header: tuple[str, str]) -> aio.ClientCallDetails:
    metadata = aio.Metadata(*(details.metadata or ()))
    metadata.add(*header)
    return aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)


def _method(details: aio.ClientCallDetails) -> str:
    return details.method.decode() if isinstance(details.method, bytes) else str(details.method)


class _UnaryCalls(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    """Adds the token; raises a failure as a BankError."""

    def __init__(self, token: _Token) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: aio.ClientCallDetails, request: Any) -> Any:
        if _method(details) not in PUBLIC_METHODS:
            details = _with_token(details, await self._token.header())
        call = await continuation(details, request)
        try:
            return await call
        except aio.AioRpcError as error:
            raise BankError(error) from None


class _StreamCalls(aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    """Adds the token to server-streaming calls (their failures arrive while reading:
    `BankError(error)` reads the details of one)."""

    def __init__(self, token: _Token) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(_with_token(details, await self._token.header()), request)


def _credentials(
    ca_file: str | Path | None, cert_file: str | Path | None, key_file: str | Path | None
) -> grpc.ChannelCredentials | None:
    """TLS trusting `ca_file`, presenting `cert_file` (and `key_file`, by default beside it with
    the .key suffix) where the bank asks for a client certificate; None: plaintext (loopback)."""
    if not ca_file:
        if cert_file:
            raise ValueError("a client certificate needs the bank's CA too (ca_file, OGPGY_CA_FILE)")
        return None
    if not cert_file:
        return grpc.ssl_channel_credentials(Path(ca_file).read_bytes())
    key = Path(key_file) if key_file else Path(cert_file).with_suffix(".key")
    return grpc.ssl_channel_credentials(Path(ca_file).read_bytes(), key.read_bytes(), Path(cert_file).read_bytes())


# The environment a shell set up for one bank gives every client (the `ogpgy` commands read the
# same names): where it listens, whom to trust, which certificate to show, and who calls.
ENVIRONMENT = ("OGPGY_TARGET", "OGPGY_CA_FILE", "OGPGY_CERT_FILE", "OGPGY_KEY_FILE", "OGPGY_USERNAME", "OGPGY_PASSWORD")


class BankClient:
    """`async with BankClient(target, username=..., password=...) as bank:` then
    `await bank.customers.GetCustomer(...)`. `ca_file`: the bank's CA (a bank started with
    --tls, a mesh's front door, a cluster), else the channel is plaintext (loopback);
    `cert_file`/`key_file`: the client certificate a bank with mutual TLS asks for.
    `BankClient.from_env()` takes all of them from the environment (`ENVIRONMENT`)."""

    def __init__(
        self,
        target: str,
        *,
        username: str,
        password: str,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        audience: str = "",
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        credentials = _credentials(ca_file, cert_file, key_file)
        merged = [*dict([*DEFAULT_OPTIONS, *options]).items()]

        def open_channel(interceptors: Sequence[aio.ClientInterceptor] = ()) -> aio.Channel:
            if credentials is None:
                return aio.insecure_channel(target, options=merged, interceptors=interceptors)
            return aio.secure_channel(target, credentials, options=merged, interceptors=interceptors)

        self._login = open_channel()  # IssueToken's own channel: no token on it
        token = _Token(self._login, username, password, audience)
        self.channel = open_channel([_UnaryCalls(token), _StreamCalls(token)])
        self.customers = CustomerServiceStub(self.channel)
        self.accounts = AccountServiceStub(self.channel)
        self.payments = PaymentServiceStub(self.channel)
        self.lending = LendingServiceStub(self.channel)
        self.interest = InterestServiceStub(self.channel)
        self.notifications = NotificationServiceStub(self.channel)
        self.identity = IdentityServiceStub(self.channel)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> BankClient:
        """A client of the bank the environment names: OGPGY_TARGET (default 127.0.0.1:50051),
        OGPGY_CA_FILE, OGPGY_CERT_FILE, OGPGY_KEY_FILE, OGPGY_USERNAME (default admin) and
        OGPGY_PASSWORD (required: a password is never guessed)."""
        if not environ.get("OGPGY_PASSWORD") and "password" not in overrides:
            raise ValueError("set OGPGY_PASSWORD (the password of OGPGY_USERNAME, by default admin)")
        settings: dict[str, Any] = {
            "username": environ.get("OGPGY_USERNAME") or "admin",
            "password": environ.get("OGPGY_PASSWORD", ""),
            "ca_file": environ.get("OGPGY_CA_FILE") or None,
            "cert_file": environ.get("OGPGY_CERT_FILE") or None,
            "key_file": environ.get("OGPGY_KEY_FILE") or None,
        }
        target = overrides.pop("target", None) or environ.get("OGPGY_TARGET") or "127.0.0.1:50051"
        return cls(target, **{**settings, **overrides})

    async def close(self) -> None:
        await self.channel.close()
        await self._login.close()

    async def __aenter__(self) -> BankClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
