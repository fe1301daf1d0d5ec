"""The infrastructure context: the technical services every business context of a process shares
by reference. It belongs to the composition root: common/ holds the parts, this module assembles
them, and nothing in common/ imports it."""

from __future__ import annotations

from common.cache.registry import Caches
from common.clock import Clock
from common.config import Settings
from common.db.databases import Databases
from common.di import og_component, og_context, provide
from common.events.bus import EventBus
from common.operations.api import DeadLetterApi
from common.operations.dead_letters import DeadLetters
from common.pagination import PageTokens
from common.security.component import Security


@og_component()
class ServerPageTokens(PageTokens):
    """Page tokens signed with a key derived from the bank's signing key: every replica of every
    context reads the tokens of every other."""

    def __init__(self, security: Security) -> None:
        super().__init__(security.derived_key("ogpgy page tokens v1"))


@og_context(
    name="infrastructure",
    description="Shared technical services: settings, clock, databases, event bus, caches, security, page tokens;"
    " the operators' dead letters",
    business_owner="Platform Team",
    providers=[
        Clock,
        Databases,
        EventBus,
        Caches,
        Security,
        provide(ServerPageTokens, provides=PageTokens),
        DeadLetters,
        DeadLetterApi,
    ],
    shares=[Settings, Clock, Databases, EventBus, Caches, Security, PageTokens],
    exports=[DeadLetterApi],
)
class InfrastructureModule:
    """Settings and Security are supplied by the process (ContextModuleBuilder.supply).

    It serves og.operations.v1.DeadLetterService in every process, for the consumers whose
    databases the process opened: the dead letters are kept where the bus gave up on them."""
