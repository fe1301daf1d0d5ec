"""The customer bounded context."""

from __future__ import annotations

from common.cache.registry import Caches
from common.clock import Clock
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from services.customer.adapters import CsvSanctionsSource, IdentityUsers
from services.customer.api import CustomerApi
from services.customer.messages import OUTGOING
from services.customer.ports import SanctionsSource, Users
from services.customer.repository import CustomerUnits
from services.customer.service import CustomerUseCases


@og_context(
    name="customer",
    description="Customer registration, KYC verification, customer reads and contact changes",
    business_owner="Customer Experience Team",
    imports=[
        ModuleContextImport(IdentityServiceStub, from_context="identity", methods=["GetUser"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
        ModuleContextImport(Caches, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        CustomerUnits,
        OutboxRelay,
        provide(CsvSanctionsSource, provides=SanctionsSource),
        provide(IdentityUsers, provides=Users),
        CustomerUseCases,
        CustomerApi,
    ],
    exports=[CustomerApi],
    publishes=OUTGOING.messages,
)
class CustomerModule:
    """Exports only its gRPC service: other contexts reach it through CustomerServiceStub."""
