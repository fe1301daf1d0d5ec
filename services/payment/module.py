"""The payment bounded context."""

from __future__ import annotations

from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.payment.v1 import events_pb2 as payment_events
from services.payment.api import PaymentApi
from services.payment.repository import PaymentRepository, SqlPaymentRepository
from services.payment.service import (
    FraudScreening,
    PaymentApplicationService,
    PaymentProcessor,
    StoreAndForward,
    VelocityPayGateway,
)
from velocitypay.v1.network_pb2_grpc import PaymentNetworkServiceStub


@og_context(
    name="payment",
    description="Payments to accounts of this bank and, through VelocityPay, to other banks; fraud screening",
    business_owner="Payments Team",
    imports=[
        ModuleContextImport(
            AccountServiceStub,
            from_context="account",
            methods=["CheckAccountAccess", "PlaceHold", "LookupHold", "CaptureHold", "ReleaseHold", "ListEntries"],
        ),
        ModuleContextImport(PaymentNetworkServiceStub, from_context="velocitypay", methods=["SubmitPayment", "ListSettlements"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        provide(SqlPaymentRepository, provides=PaymentRepository),
        OutboxRelay,
        FraudScreening,
        VelocityPayGateway,
        PaymentProcessor,
        PaymentApplicationService,
        StoreAndForward,
        PaymentApi,
    ],
    exports=[PaymentApi],
    publishes=[payment_events.PaymentQueued, payment_events.PaymentCompleted, payment_events.PaymentFailed],
)
class PaymentModule:
    """Money moves only through the account context's stub; the network only through a breaker."""
