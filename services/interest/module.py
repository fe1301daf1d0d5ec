"""The interest bounded context."""

from __future__ import annotations

from common.batch.runner import BatchRunner
from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.lending.v1.lending_service_pb2_grpc import LendingServiceStub
from services.interest.adapters import AccountFees, AccountLedger, LendingCollections, OutboxAnnouncements
from services.interest.api import InterestApi
from services.interest.messages import OUTGOING
from services.interest.ports import Announcements, Collections, Fees, Ledger
from services.interest.scheduler import CloseOfBusinessScheduler
from services.interest.service import InterestUseCases


@og_context(
    name="interest",
    description="The bank's day: daily interest accrual, and the close of business that runs interest, month-end fees and loan collection for each business date in order",
    business_owner="Treasury Team",
    imports=[
        ModuleContextImport(AccountServiceStub, from_context="account", methods=["AccrueInterest", "ChargeMonthlyFees"]),
        ModuleContextImport(LendingServiceStub, from_context="lending", methods=["RunCollection"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        OutboxRelay,
        BatchRunner,
        provide(AccountLedger, provides=Ledger),
        provide(OutboxAnnouncements, provides=Announcements),
        provide(AccountFees, provides=Fees),
        provide(LendingCollections, provides=Collections),
        InterestUseCases,
        CloseOfBusinessScheduler,
        InterestApi,
    ],
    exports=[InterestApi],
    publishes=OUTGOING.messages,
)
class InterestModule:
    """Posts interest through the account context's contract, a chunk of accounts per call."""
