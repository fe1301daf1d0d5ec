"""VelocityPay as a context declaration: embedded mode serves the simulator beside the bank; in
other modes it is a remote declaration whose services are reached at the configured address."""

from __future__ import annotations

from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context
from services.velocitypay.simulator import NetworkMembers, NetworkState, PaymentNetworkApi, SimulatorControlApi


@og_context(
    name="velocitypay",
    description="Simulator of the external VelocityPay payment network (not ours)",
    business_owner="Payments Team (test double of an outside party)",
    imports=[
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
    ],
    providers=[ContextDatabase, NetworkState, NetworkMembers, PaymentNetworkApi, SimulatorControlApi],
    exports=[PaymentNetworkApi, SimulatorControlApi],
    external=True,  # the outside world: the bank's contexts send it no identity of theirs
)
class VelocityPayModule:
    """The outside world: fault injection and counters for tests and demos."""
