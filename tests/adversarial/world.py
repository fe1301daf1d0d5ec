"""A bank with a victim worth attacking, and every kind of caller that is not her.

Alice (the victim) has money, a savings account, a hold she placed herself, a transfer she made,
an external payment queued during a network outage (its hold belongs to the payment context) and
an approved loan. The attackers: Bob (another customer), a relationship manager assigned to her and
one who is not, every context's service identity acting alone, and a context relaying for Bob.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from grpc import aio

from common.config import Settings
from common.di import context_spec
from common.grpc.client import bearer_channel
from common.grpc.identity import SUBJECT_HEADER, allowed_importers
from common.security.component import Security
from mesh.embedded import ALL_MODULES, RunningBank, start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from ogpgy.notification.v1 import notification_service_pb2 as npb
from ogpgy.notification.v1 import notification_service_pb2_grpc as ngrpc
from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb
from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bgrpc
from ogpgy.payment.v1 import payment_service_pb2 as ppb
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc
from services.velocitypay.simulator import faults_pb
from tests.adversarial.snapshot import snapshot
from tests.bank_helpers import Bank, create_user, eur, eventually
from tests.conftest import ADMIN_PASSWORD, issue_token
from velocitypay.v1 import network_pb2 as vpb
from velocitypay.v1 import network_pb2_grpc as vgrpc

PASSWORD = "password-of-the-world"
CONTEXTS = ("identity", "customer", "account", "payment", "lending", "interest")
EXTERNAL_IBAN = "DE89370400440532013000"
Metadata = tuple[tuple[str, str], ...]


def settings_for(tmp_path: Path, **engine: object) -> Settings:
    """Workers that look often and take over a pending payment quickly, so that a test can wait
    for everything they would ever do."""
    return Settings(
        data_dir=tmp_path,
        port=0,
        admin_password=ADMIN_PASSWORD,
        queue_poll_seconds=0.05,
        payment_stale_seconds=0.5,
        breaker_fail_max=2,
        breaker_reset_seconds=0.5,
        network_timeout_seconds=0.3,
        **engine,
    )


@asynccontextmanager
async def running_bank(settings: Settings) -> AsyncIterator[RunningBank]:
    """The bank on the real clock: its workers judge what is stale by it."""
    bank = await start_embedded(settings)
    try:
        yield bank
    finally:
        await bank.stop(grace=1)


@dataclass
class Victim:
    customer: str
    account: str
    savings: str
    own_hold: str  # placed by Alice herself
    payment_id: str  # external, QUEUED
    payment_hold: str  # the payment context's
    payment_hold_request: str
    transfer: str  # from her account to her savings, made by her
    loan: str  # approved, not disbursed
    notification: str  # her welcome
    batch: str  # her bulk payment of one line, to Bob, paid


@dataclass
class Principal:
    """A caller that is not the victim: what it sends, and which context it is (if one)."""

    name: str
    metadata: Metadata
    context: str = ""


@dataclass
class World:
    bank: RunningBank
    settings: Settings
    admin_token: str
    alice_token: str
    victim: Victim
    bob: str
    bob_account: str
    users: dict[str, str] = field(default_factory=dict)  # name -> user id
    principals: list[Principal] = field(default_factory=list)
    importers: dict[str, frozenset[str]] = field(default_factory=dict)  # method path -> contexts that import it

    def service_token(self, context: str) -> str:
        return self.bank.contexts["infrastructure"].resolve(Security).service_token(context)

    def attackers(self, path: str, exempt: tuple[str, ...] = (), scheduled_by: str = "") -> list[Principal]:
        """Everyone who must be refused `path` on the victim's resources: the users; every
        context alone; a context that imports the RPC relaying for Bob. `exempt`: contexts for
        which the call is their own business (the owner of the targeted hold); `scheduled_by`:
        the context whose own schedule runs it, alone (relaying for Bob it is still refused)."""
        found = [p for p in self.principals if not p.context]
        for context in CONTEXTS:
            if context in exempt:
                continue
            if context == scheduled_by:
                found += self._relaying(path, context)
                continue
            found.append(Principal(f"{context} alone", (("authorization", f"Bearer {self.service_token(context)}"),), context))
            found += self._relaying(path, context)
        return found

    def _relaying(self, path: str, context: str) -> list[Principal]:
        """`context` relaying for Bob, when it imports the RPC."""
        if context not in self.importers.get(path, ()):
            return []
        bob = self.principals[0].metadata[0][1].removeprefix("Bearer ")
        token = (("authorization", f"Bearer {self.service_token(context)}"), (SUBJECT_HEADER, bob))
        return [Principal(f"{context} for Bob", token, context)]


async def build_world(bank: RunningBank, settings: Settings) -> World:
    admin_token = await issue_token(bank.target)
    async with bearer_channel(bank.target, admin_token) as admin_channel:
        admin = Bank(admin_channel)
        identity = igrpc.IdentityServiceStub(admin_channel)
        alice, bob = await admin.verified_customer("alice"), await admin.verified_customer("bob")
        alice_account = (await admin.default_account(alice)).account_id
        bob_account = (await admin.default_account(bob)).account_id
        await admin.deposit(alice_account, "1000.00", "alice")
        await admin.deposit(bob_account, "100.00", "bob")
        users = {
            "alice": await create_user(identity, "alice", ipb.ROLE_CUSTOMER, PASSWORD, alice),
            "bob": await create_user(identity, "bob", ipb.ROLE_CUSTOMER, PASSWORD, bob),
            "rita": await create_user(identity, "rita", ipb.ROLE_RELATIONSHIP_MANAGER, PASSWORD),
            "ron": await create_user(identity, "ron", ipb.ROLE_RELATIONSHIP_MANAGER, PASSWORD),
        }
        await admin.customers.AssignRelationshipManager(
            cpb.AssignRelationshipManagerRequest(
                request_id="assign-rita", customer_id=alice, relationship_manager_id=users["rita"]
            )
        )
        alice_token = await issue_token(bank.target, "alice", PASSWORD)
        victim = await _alice_does_her_banking(bank.target, alice_token, alice, alice_account, bob_account, admin_token)
        loans = lgrpc.LendingServiceStub(admin_channel)
        await loans.ApproveLoan(
            lpb.ApproveLoanRequest(request_id="approve-alice", loan_id=victim.loan, annual_interest_rate="0.05")
        )
    tokens = {name: await issue_token(bank.target, name, PASSWORD) for name in ("bob", "rita", "ron")}
    principals = [
        Principal("customer Bob", (("authorization", f"Bearer {tokens['bob']}"),)),
        Principal("relationship manager assigned to Alice", (("authorization", f"Bearer {tokens['rita']}"),)),
        Principal("relationship manager not assigned to her", (("authorization", f"Bearer {tokens['ron']}"),)),
    ]
    importers = dict(allowed_importers(context_spec(m) for m in ALL_MODULES))
    return World(bank, settings, admin_token, alice_token, victim, bob, bob_account, users, principals, importers)


async def _alice_does_her_banking(target: str, token: str, alice: str, account: str, bob_account: str, admin: str) -> Victim:
    async with bearer_channel(target, token) as channel, bearer_channel(target, admin) as network:
        accounts = agrpc.AccountServiceStub(channel)
        savings = (
            await accounts.OpenAccount(
                apb.OpenAccountRequest(
                    request_id="alice-savings", customer_id=alice, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
                )
            )
        ).account.account_id
        own_hold = (
            await accounts.PlaceHold(
                apb.PlaceHoldRequest(
                    request_id="alice-hold", debit_account_id=account, credit_account_id=bob_account, amount=eur("5.00")
                )
            )
        ).hold.hold_id
        transfer = (
            await accounts.Transfer(
                apb.TransferRequest(
                    request_id="alice-saves", debit_account_id=account, credit_account_id=savings, amount=eur("10.00")
                )
            )
        ).transfer.transfer_id
        control = vgrpc.SimulatorControlServiceStub(network)
        await control.SetFaults(vpb.SetFaultsRequest(faults=faults_pb(outage=True)))  # it stays down: the payment waits
        payment = (
            await pgrpc.PaymentServiceStub(channel).CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id="alice-pays-out",
                    debtor_account_id=account,
                    amount=eur("20.00"),
                    external=ppb.ExternalBeneficiary(iban=EXTERNAL_IBAN, name="Max Muster"),
                )
            )
        ).payment
        assert payment.status == ppb.PAYMENT_STATUS_QUEUED
        holds = (await accounts.ListHolds(apb.ListHoldsRequest(account_id=account))).holds
        payment_hold = next(h.hold_id for h in holds if h.owner_context == "payment")
        batch = await _alice_pays_a_batch(channel, account, bob_account)
        loan = (
            await lgrpc.LendingServiceStub(channel).ApplyForLoan(
                lpb.ApplyForLoanRequest(
                    request_id="alice-loan", customer_id=alice, account_id=account, principal=eur("500.00"), term_months=12
                )
            )
        ).loan.loan_id
        notifications = ngrpc.NotificationServiceStub(channel)

        async def welcomed() -> list[npb.Notification]:
            return list((await notifications.ListNotifications(npb.ListNotificationsRequest(customer_id=alice))).notifications)

        await eventually(welcomed, what="Alice's welcome")
        welcome = (await welcomed())[0].notification_id
    return Victim(
        alice,
        account,
        savings,
        own_hold,
        payment.payment_id,
        payment_hold,
        f"{payment.payment_id}-hold",
        transfer,
        loan,
        welcome,
        batch,
    )


async def _alice_pays_a_batch(channel: aio.Channel, account: str, payee: str) -> str:
    """Her bulk payment: one line to Bob, paid (after her payment out, whose hold the tests look up first)."""
    line = bpb.PaymentBatchLine(
        end_to_end_id="alice-line-1", internal=ppb.InternalBeneficiary(account_id=payee), amount=eur("1.00")
    )
    lines = bpb.PaymentBatchLines(lines=[line], number_of_transactions=1, control_sum="1.00")
    request = bpb.SubmitPaymentBatchRequest(request_id="alice-batch", debtor_account_id=account, lines=lines)
    answers = [answer async for answer in bgrpc.BulkPaymentServiceStub(channel).SubmitPaymentBatch(request)]
    return answers[-1].batch.batch_id


async def quiet(world: World) -> None:
    """Waits until the relay has published every event (the bank is at rest)."""

    async def published() -> bool:
        tables = await snapshot(world.settings)
        return all(row[-1] is not None for name, rows in tables.items() if name.endswith(".outbox") for row in rows)

    await eventually(published, 10, "every event published")
