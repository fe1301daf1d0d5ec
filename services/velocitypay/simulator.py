"""The VelocityPay network simulator: settles payments, never twice, and misbehaves on demand.

Faults (added latency, error rate, timeout rate, full outage) are set by SetFaults or by flags of
`ogpgy velocitypay`; GetStats counts what arrived, so tests can prove that an open circuit sent
nothing and that each payment was seen once.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal

from google.protobuf import duration_pb2
from grpc import aio
from velocitypay.v1 import network_pb2 as pb
from velocitypay.v1 import network_pb2_grpc as pb_grpc

from common.di import og_component
from common.errors import FieldViolation, NotFound, Unavailable, ValidationFailed
from common.ids import new_id

_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}")


def iban_is_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not _IBAN.fullmatch(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    outage: bool = False


@og_component()
@dataclass
class NetworkState:
    """What the network has settled and what it has seen (in memory: a simulator)."""

    faults: Faults = field(default_factory=Faults)
    settled: dict[str, pb.SubmitPaymentResponse] = field(default_factory=dict)
    calls_received: int = 0
    duplicate_submissions: int = 0
    faulted_calls: int = 0

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
class PaymentNetworkApi(pb_grpc.PaymentNetworkServiceServicer):
    """velocitypay.v1.PaymentNetworkService. The network checks its members its own way: our
    bank tokens mean nothing to it."""

    PUBLIC_METHODS = ("SubmitPayment", "GetPaymentStatus")

    def __init__(self, state: NetworkState) -> None:
        self._state = state

    async def SubmitPayment(self, request: pb.SubmitPaymentRequest, context: aio.ServicerContext) -> pb.SubmitPaymentResponse:
        await self._state.misbehave(context)
        if not request.payment_id:
            raise ValidationFailed([FieldViolation("payment_id", "required")])
        known = self._state.settled.get(request.payment_id)
        if known is not None:
            self._state.duplicate_submissions += 1
            return known
        if iban_is_valid(request.beneficiary_iban):
            answer = pb.SubmitPaymentResponse(network_reference=new_id("vp"), status=pb.NETWORK_PAYMENT_STATUS_SETTLED)
        else:
            answer = pb.SubmitPaymentResponse(network_reference=new_id("vp"), status=pb.NETWORK_PAYMENT_STATUS_REJECTED,
                                              reject_reason="INVALID_IBAN")  # fmt: skip
        self._state.settled[request.payment_id] = answer
        return answer

    async def GetPaymentStatus(self, request: pb.GetPaymentStatusRequest, context: aio.ServicerContext) -> pb.GetPaymentStatusResponse:
        await self._state.misbehave(context)
        known = self._state.settled.get(request.payment_id)
        if known is None:
            raise NotFound("payment", request.payment_id)
        return pb.GetPaymentStatusResponse(network_reference=known.network_reference, status=known.status)


@og_component()
class SimulatorControlApi(pb_grpc.SimulatorControlServiceServicer):
    """velocitypay.v1.SimulatorControlService: the operator's knobs (loopback only)."""

    PUBLIC_METHODS = ("SetFaults", "GetStats")

    def __init__(self, state: NetworkState) -> None:
        self._state = state

    async def SetFaults(self, request: pb.SetFaultsRequest, context: aio.ServicerContext) -> pb.SetFaultsResponse:
        f = request.faults
        self._state.faults = Faults(
            latency=f.added_latency.ToTimedelta().total_seconds(),
            error_rate=_decimal_rate(f.error_rate, "faults.error_rate"),
            timeout_rate=_decimal_rate(f.timeout_rate, "faults.timeout_rate"),
            outage=f.outage,
        )
        return pb.SetFaultsResponse(faults=request.faults)

    async def GetStats(self, request: pb.GetStatsRequest, context: aio.ServicerContext) -> pb.GetStatsResponse:
        s = self._state
        return pb.GetStatsResponse(calls_received=s.calls_received, payments_accepted=len(s.settled),
                                   duplicate_submissions=s.duplicate_submissions, faulted_calls=s.faulted_calls)  # fmt: skip


def faults_pb(latency_ms: int = 0, error_rate: str = "0", timeout_rate: str = "0", outage: bool = False) -> pb.Faults:
    return pb.Faults(added_latency=duration_pb2.Duration(nanos=latency_ms * 1_000_000 % 10**9, seconds=latency_ms // 1000),
                     error_rate=error_rate, timeout_rate=timeout_rate, outage=outage)  # fmt: skip
