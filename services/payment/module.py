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
from services.payment.adapters import AccountsClient, VelocityPayGateway
from services.payment.api import BulkPaymentApi, PaymentApi
from services.payment.batches import BatchUseCases
from services.payment.forwarding import StoreAndForward
from services.payment.messages import OUTGOING
from services.payment.operations import PaymentOperations
from services.payment.ports import Accounts, PaymentNetwork
from services.payment.repository import PaymentUnits
from services.payment.service import FraudScreening, PaymentProcessor, PaymentUseCases
from velocitypay.v1.network_pb2_grpc import PaymentNetworkServiceStub


@og_context(
    name="payment",
    description="Payments to accounts of this bank and, through VelocityPay, to other banks, one by one or in batches (pain.001); fraud screening",
    business_owner="Payments Team",
    imports=[
        ModuleContextImport(
            AccountServiceStub,
            from_context="account",
            methods=[
                "CheckAccountAccess",
                "GetInternalAccount",
                "PlaceHold",
                "PlaceHolds",
                "LookupHold",
                "CaptureHold",
                "ReleaseHold",
                "ListEntries",
            ],
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
        PaymentUnits,
        OutboxRelay,
        FraudScreening,
        provide(AccountsClient, provides=Accounts),
        provide(VelocityPayGateway, provides=PaymentNetwork),
        PaymentProcessor,
        PaymentUseCases,
        PaymentOperations,
        StoreAndForward,
        BatchUseCases,
        PaymentApi,
        BulkPaymentApi,
    ],
    exports=[PaymentApi, BulkPaymentApi],
    publishes=OUTGOING.messages,
)
class PaymentModule:
    """Money moves only through the account context's stub; the network only through a breaker."""
