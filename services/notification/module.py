"""The notification bounded context."""

from __future__ import annotations

from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from common.security.component import Security
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.notification.adapters import CustomerDirectory, JinjaTemplates, SmtpMailer
from services.notification.api import NotificationApi
from services.notification.events import INCOMING, NotificationEventsHandler
from services.notification.ports import Mailer, Recipients, Templates
from services.notification.repository import NotificationUnits
from services.notification.service import Courier, NotificationUseCases


@og_context(
    name="notification",
    description="Tells customers by e-mail what other contexts' events mean for them, as they prefer",
    business_owner="Customer Communications Team",
    imports=[
        ModuleContextImport(CustomerServiceStub, from_context="customer", methods=["GetCustomer"]),
        ModuleContextImport(AccountServiceStub, from_context="account", methods=["GetAccount"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
        ModuleContextImport(Security, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        OutboxRelay,
        NotificationUnits,
        provide(JinjaTemplates, provides=Templates),
        provide(CustomerDirectory, provides=Recipients),
        provide(SmtpMailer, provides=Mailer),
        NotificationUseCases,
        Courier,
        NotificationApi,
        NotificationEventsHandler,
    ],
    exports=[NotificationApi],
    consumes=INCOMING.messages,
)
class NotificationModule:
    """Reads customers and accounts as itself (to address a message), never changes them."""
