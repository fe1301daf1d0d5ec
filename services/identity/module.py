"""The identity bounded context."""

from __future__ import annotations

from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from common.security.component import Security
from services.identity.api import IdentityApi
from services.identity.events import INCOMING, IdentityEventsHandler
from services.identity.repository import IdentityUnits
from services.identity.service import IdentityUseCases


@og_context(
    name="identity",
    description="Users and their lifecycle, roles, password checks, signed access tokens, and the audit trail",
    business_owner="Security Team",
    imports=[
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
        ModuleContextImport(Security, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        IdentityUnits,
        OutboxRelay,
        IdentityUseCases,
        IdentityApi,
        IdentityEventsHandler,
    ],
    exports=[IdentityApi],
    consumes=INCOMING.messages,
)
class IdentityModule:
    """The only context that signs tokens; every server verifies them with the public key and
    applies the revocations it publishes. It keeps the audit trail every context records into:
    the trail answers "who", and identity is where the "who" lives."""
