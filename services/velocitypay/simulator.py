"""The VelocityPay network simulator: settles payments, never twice, and misbehaves on demand.

Faults (added latency, error rate, timeout rate, full outage) are set by SetFaults or by flags of
`ogpgy velocitypay`; GetStats counts what arrived, so tests can prove that an open circuit sent
nothing and that each payment was seen once. What it accepted is kept in its own database (a
real network does not forget a settlement when it restarts); ListSettlements reports it.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from dataclasses import dataclass, field
from decimal import Decimal

from google.protobuf import duration_pb2
from grpc import aio
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from common.config import Settings
from common.db.base import Row, Tx, aggregate
from common.db.databases import ContextDatabase
from common.di import BaseComponent, og_component
from common.errors import FieldViolation, NotFound, Unauthenticated, Unavailable, ValidationFailed
from common.grpc.identity import header
from common.ids import new_id
from common.security.context import ADMIN
from common.security.policy import require_role
from common.security.secrets import shared_key
from common.validation import Violations
from velocitypay.v1 import network_pb2 as pb
from velocitypay.v1 import network_pb2_grpc as pb_grpc

MEMBER_KEY_HEADER = "x-velocitypay-member-key"


def iban_is_valid(iban: str) -> bool:
    """The network settles only to an IBAN whose check digits hold and whose bank it reaches
    (one in the bank registry schwifty carries)."""
    try:
        return IBAN(iban).bank is not None
    except SchwiftyException:
        return False


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    outage: bool = False


_COLUMNS = "payment_id, network_reference, status, reject_reason, currency, amount"


def _settlement(row: Row) -> pb.Settlement:
    return pb.Settlement(
        payment_id=row["payment_id"],
        network_reference=row["network_reference"],
        status=pb.NetworkPaymentStatus.Value(row["status"]),
        currency_code=row["currency"],
        amount=row["amount"],
    )


def _answer(row: Row) -> pb.SubmitPaymentResponse:
    return pb.SubmitPaymentResponse(
        network_reference=row["network_reference"],
        status=pb.NetworkPaymentStatus.Value(row["status"]),
        reject_reason=row["reject_reason"],
    )


async def _accept(
    tx: Tx, request: pb.SubmitPaymentRequest, answer: pb.SubmitPaymentResponse
) -> tuple[pb.SubmitPaymentResponse, bool]:
    """Records the payment once; returns what is recorded and whether it was new."""
    added = await tx.execute(
        f"INSERT INTO settlements ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (payment_id) DO NOTHING",
        request.payment_id,
        answer.network_reference,
        pb.NetworkPaymentStatus.Name(answer.status),
        answer.reject_reason,
        request.currency_code,
        request.amount,
    )
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM settlements WHERE payment_id = ?", request.payment_id)
    assert row is not None
    return _answer(row), added == 1


async def _known(tx: Tx, payment_id: str) -> pb.SubmitPaymentResponse | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM settlements WHERE payment_id = ?", payment_id)
    return _answer(row) if row else None


async def _page(tx: Tx, after: int, limit: int) -> tuple[list[pb.Settlement], int | None]:
    rows = await tx.fetchall(f"SELECT seq, {_COLUMNS} FROM settlements WHERE seq > ? ORDER BY seq LIMIT ?", after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return [_settlement(r) for r in rows], (int(rows[-1]["seq"]) if more else None)


async def _count(tx: Tx) -> int:
    return int((await aggregate(tx, "SELECT COUNT(*) AS n FROM settlements"))["n"])


@og_component()
@dataclass
class NetworkState(BaseComponent):
    """What the network has accepted (in its ledger) and what it has seen (counters, in memory)."""

    ledger: ContextDatabase
    faults: Faults = field(default_factory=Faults)
    calls_received: int = 0
    duplicate_submissions: int = 0
    faulted_calls: int = 0

    async def accept(self, request: pb.SubmitPaymentRequest, answer: pb.SubmitPaymentResponse) -> pb.SubmitPaymentResponse:
        recorded, new = await self.ledger.write(_accept, request, answer)
        self.duplicate_submissions += not new
        return recorded

    async def known(self, payment_id: str) -> pb.SubmitPaymentResponse | None:
        return await self.ledger.read(_known, payment_id)

    async def page(self, after: int, limit: int) -> tuple[list[pb.Settlement], int | None]:
        return await self.ledger.read(_page, after, limit)

    async def accepted(self) -> int:
        return await self.ledger.read(_count)

    async def misbehave(self, context: aio.ServicerContext) -> None:
        """Applies the configured faults to one call."""
        self.calls_received += 1
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        if self.faults.outage or random.random() < self.faults.error_rate:
            self.faulted_calls += 1
            raise Unavailable("NETWORK_UNAVAILABLE", "VelocityPay is unavailable")
        if random.random() < self.faults.timeout_rate:
            self.faulted_calls += 1
            await asyncio.sleep((context.time_remaining() or 30.0) + 0.5)  # never answers in time
            raise Unavailable("NETWORK_TIMEOUT", "VelocityPay did not answer")


def _decimal_rate(value: str, field_name: str) -> float:
    try:
        rate = float(Decimal(value or "0"))
    except ArithmeticError as exc:
        raise ValidationFailed([FieldViolation(field_name, "a decimal between 0 and 1")]) from exc
    if not 0 <= rate <= 1:
        raise ValidationFailed([FieldViolation(field_name, "a decimal between 0 and 1")])
    return rate


@og_component()
class NetworkMembers(BaseComponent):
    """Who may use the network: its members, each known by the key it was enrolled with. The one
    member is our bank, whose key both ends read from one file (Settings.member_key_path): the
    simulation's stand-in for an enrollment."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.member_key_path()
        self._key = b""

    async def initialize(self) -> None:
        self._key = shared_key(self._path).encode()

    def check(self, context: aio.ServicerContext) -> None:
        sent = header(context.invocation_metadata() or (), MEMBER_KEY_HEADER) or ""
        if not self._key or not hmac.compare_digest(sent.encode(), self._key):
            raise Unauthenticated(
                "MEMBER_KEY_INVALID", f"the network serves its members only: {MEMBER_KEY_HEADER} is missing or wrong"
            )


@og_component()
class PaymentNetworkApi(pb_grpc.PaymentNetworkServiceServicer):
    """velocitypay.v1.PaymentNetworkService. The network checks its members its own way (a member
    key, NetworkMembers): our bank tokens mean nothing to it."""

    PUBLIC_METHODS = ("SubmitPayment", "GetPaymentStatus", "ListSettlements")  # to the bank's token check

    def __init__(self, state: NetworkState, members: NetworkMembers) -> None:
        self._state = state
        self._members = members

    async def _admit(self, context: aio.ServicerContext) -> None:
        self._members.check(context)
        await self._state.misbehave(context)

    async def SubmitPayment(self, request: pb.SubmitPaymentRequest, context: aio.ServicerContext) -> pb.SubmitPaymentResponse:
        await self._admit(context)
        if not request.payment_id or len(request.payment_id) > 64:
            raise ValidationFailed([FieldViolation("payment_id", "required, at most 64 characters")])
        if iban_is_valid(request.beneficiary_iban):
            answer = pb.SubmitPaymentResponse(network_reference=new_id("vp"), status=pb.NETWORK_PAYMENT_STATUS_SETTLED)
        else:
            answer = pb.SubmitPaymentResponse(
                network_reference=new_id("vp"), status=pb.NETWORK_PAYMENT_STATUS_REJECTED, reject_reason="INVALID_IBAN"
            )
        return await self._state.accept(request, answer)

    async def GetPaymentStatus(
        self, request: pb.GetPaymentStatusRequest, context: aio.ServicerContext
    ) -> pb.GetPaymentStatusResponse:
        await self._admit(context)
        known = await self._state.known(request.payment_id)
        if known is None:
            raise NotFound("payment", request.payment_id)
        return pb.GetPaymentStatusResponse(network_reference=known.network_reference, status=known.status)

    async def ListSettlements(
        self, request: pb.ListSettlementsRequest, context: aio.ServicerContext
    ) -> pb.ListSettlementsResponse:
        await self._admit(context)
        v = Violations()
        v.check(0 <= request.page_size <= 1000, "page_size", "must be between 0 and 1000")
        after = int(request.page_token) if request.page_token.isdigit() and len(request.page_token) < 19 else 0
        v.check(not request.page_token or after > 0, "page_token", "pass next_page_token unchanged")
        v.raise_if_any()
        settlements, next_after = await self._state.page(after, request.page_size or 500)
        return pb.ListSettlementsResponse(settlements=settlements, next_page_token=str(next_after) if next_after else "")


@og_component()
class SimulatorControlApi(pb_grpc.SimulatorControlServiceServicer):
    """velocitypay.v1.SimulatorControlService: the operator's knobs. Beside the bank (on its port)
    they are the bank's admins'; served alone, on a port of its own, they are open."""

    def __init__(self, state: NetworkState, settings: Settings) -> None:
        self._state = state
        self._open = settings.control_plane_open
        self.PUBLIC_METHODS = ("SetFaults", "GetStats") if self._open else ()

    def _require_operator(self) -> None:
        if not self._open:
            require_role(ADMIN, action="control the network simulator")

    async def SetFaults(self, request: pb.SetFaultsRequest, context: aio.ServicerContext) -> pb.SetFaultsResponse:
        self._require_operator()
        f = request.faults
        self._state.faults = Faults(
            latency=f.added_latency.ToTimedelta().total_seconds(),
            error_rate=_decimal_rate(f.error_rate, "faults.error_rate"),
            timeout_rate=_decimal_rate(f.timeout_rate, "faults.timeout_rate"),
            outage=f.outage,
        )
        return pb.SetFaultsResponse(faults=request.faults)

    async def GetStats(self, request: pb.GetStatsRequest, context: aio.ServicerContext) -> pb.GetStatsResponse:
        self._require_operator()
        s = self._state
        return pb.GetStatsResponse(
            calls_received=s.calls_received,
            payments_accepted=await s.accepted(),
            duplicate_submissions=s.duplicate_submissions,
            faulted_calls=s.faulted_calls,
        )


def faults_pb(latency_ms: int = 0, error_rate: str = "0", timeout_rate: str = "0", outage: bool = False) -> pb.Faults:
    return pb.Faults(
        added_latency=duration_pb2.Duration(nanos=latency_ms * 1_000_000 % 10**9, seconds=latency_ms // 1000),
        error_rate=error_rate,
        timeout_rate=timeout_rate,
        outage=outage,
    )
