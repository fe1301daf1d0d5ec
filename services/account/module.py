"""The account bounded context: accounts and the double-entry ledger."""

from __future__ import annotations

from common.cache.registry import Caches
from common.clock import Clock
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.account.adapters import CustomerDirectory
from services.account.api import AccountApi
from services.account.events import INCOMING, CustomerEventsHandler
from services.account.messages import OUTGOING
from services.account.ports import Customers
from services.account.repository import AccountUnits
from services.account.service import AccountFactory, AccountUseCases


@og_context(
    name="account",
    description="Accounts (factory of products), the double-entry ledger, holds and statements",
    business_owner="Core Banking Team",
    imports=[
        ModuleContextImport(CustomerServiceStub, from_context="customer", methods=["GetCustomer"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
        ModuleContextImport(Caches, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        AccountUnits,
        OutboxRelay,
        AccountFactory,
        provide(CustomerDirectory, provides=Customers),
        AccountUseCases,
        AccountApi,
        CustomerEventsHandler,
    ],
    exports=[AccountApi],
    publishes=OUTGOING.messages,
    consumes=INCOMING.messages,
)
class AccountModule:
    """Exports only its gRPC service; learns about customers from CustomerServiceStub and events."""
