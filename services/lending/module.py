"""The lending bounded context."""

from __future__ import annotations

from common.batch.runner import BatchRunner
from common.clock import Clock
from common.config import Settings
from common.db.databases import ContextDatabase, Databases
from common.di import ModuleContextImport, og_context, provide
from common.events.bus import EventBus
from common.events.outbox import OutboxRelay
from common.pagination import PageTokens
from common.saga.runner import SagaRunner
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.lending.adapters import AccountsClient, CustomerDirectory
from services.lending.api import LendingApi
from services.lending.messages import OUTGOING
from services.lending.operations import OperatorUseCases
from services.lending.ports import Accounts, Customers
from services.lending.repository import LendingUnits
from services.lending.service import LendingUseCases, PaymentResolver


@og_context(
    name="lending",
    description="Loans: application, four-eyes approval, disbursement through a durable compensating saga, repayment and daily collection",
    business_owner="Lending Team",
    imports=[
        ModuleContextImport(
            AccountServiceStub,
            from_context="account",
            methods=[
                "GetAccount",
                "GetInternalAccount",
                "PlaceHold",
                "LookupHold",
                "GetHold",
                "CaptureHold",
                "ReleaseHold",
                "ReverseTransfer",
                "PostCharges",
                "LookupCharge",
            ],
        ),
        ModuleContextImport(CustomerServiceStub, from_context="customer", methods=["GetCustomer"]),
        ModuleContextImport(Databases, from_context="infrastructure"),
        ModuleContextImport(PageTokens, from_context="infrastructure"),
        ModuleContextImport(Clock, from_context="infrastructure"),
        ModuleContextImport(EventBus, from_context="infrastructure"),
        ModuleContextImport(Settings, from_context="infrastructure"),
    ],
    providers=[
        ContextDatabase,
        LendingUnits,
        OutboxRelay,
        SagaRunner,
        BatchRunner,
        provide(AccountsClient, provides=Accounts),
        provide(CustomerDirectory, provides=Customers),
        LendingUseCases,
        OperatorUseCases,
        PaymentResolver,
        LendingApi,
    ],
    exports=[LendingApi],
    publishes=OUTGOING.messages,
)
class LendingModule:
    """Money moves only through the account context's stub: step by step from the saga log, and as
    charges to the bank's loan accounts for repayments."""
