"""The bank the replay test sends its requests into, and what a request for it is (Sent, Refused,
Case; the requests themselves are in replay_money.py and replay_requests.py): an admin, Alice (a customer with a user and
money), Bob (her payee), and what each request needs prepared on demand (a fresh account, a hold,
a loan at some stage, a user, a customer whose KYC waits for a review).

Every principal is a `Who`: a user logs in with their password, again when it changed (a change
of password or authority revokes their earlier tokens), so that a replay is sent by the same
principal, not with the same token. The payment and lending contexts call as themselves, with the
bank's service tokens (alone, or relaying Alice)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc import aio

from common.grpc.client import bearer_channel
from common.grpc.identity import SUBJECT_HEADER
from common.security.component import Security
from mesh.embedded import RunningBank
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.interest.v1 import interest_service_pb2_grpc as ingrpc
from ogpgy.lending.v1 import lending_service_pb2 as lpb
from ogpgy.lending.v1 import lending_service_pb2_grpc as lgrpc
from tests.bank_helpers import Bank, eur, fresh_document
from tests.conftest import ADMIN_PASSWORD, document, issue_token, onboarding

Metadata = tuple[tuple[str, str], ...]
PASSWORD = "password-of-a-replayer"
_ids = itertools.count(1)


@dataclass
class Who:
    """A principal. A user logs in with the first of `passwords` that works (again whenever their
    token was revoked: a change of password or authority revokes it); a context calls with its
    service token, alone or relaying `relays`."""

    username: str = ""
    passwords: list[str] = field(default_factory=list)
    context: str = ""
    relays: Who | None = None
    token: str = ""

    def relogin(self, password: str) -> None:
        """The user's password is now `password`: their next call logs in with it."""
        self.passwords.insert(0, password)
        self.token = ""


@dataclass
class ReplayWorld:
    bank: RunningBank
    channel: aio.Channel  # no credentials of its own: each call carries its principal's
    admin: Who
    alice: Who = field(default_factory=Who)
    alice_customer: str = ""
    alice_account: str = ""  # her default (checking) account, funded
    bob_customer: str = ""
    bob_account: str = ""
    admin_id: str = ""

    # --- principals -----------------------------------------------------------------------------

    async def metadata(self, who: Who) -> Metadata:
        if who.context:
            service = self.bank.contexts["infrastructure"].resolve(Security).service_token(who.context)
            relayed = () if who.relays is None else ((SUBJECT_HEADER, await self.token(who.relays)),)
            return (("authorization", f"Bearer {service}"), *relayed)
        return (("authorization", f"Bearer {await self.token(who)}"),)

    async def token(self, who: Who) -> str:
        """The user's token, issued with the first of their passwords the bank takes."""
        for password in list(who.passwords):
            if who.token:
                break
            try:
                who.token = await issue_token(self.bank.target, who.username, password)
            except aio.AioRpcError as refused:
                if refused.code() != grpc.StatusCode.UNAUTHENTICATED:
                    raise
                continue
            who.passwords.remove(password)
            who.passwords.insert(0, password)
        assert who.token, f"{who.username} logs in with none of {who.passwords}"
        return who.token

    def payment_for_alice(self) -> Who:
        return Who(context="payment", relays=self.alice)

    def lending_for_alice(self) -> Who:
        return Who(context="lending", relays=self.alice)

    # --- stubs, as a principal --------------------------------------------------------------------

    @property
    def accounts(self) -> agrpc.AccountServiceStub:
        return agrpc.AccountServiceStub(self.channel)

    @property
    def customers(self) -> cgrpc.CustomerServiceStub:
        return cgrpc.CustomerServiceStub(self.channel)

    @property
    def identity(self) -> igrpc.IdentityServiceStub:
        return igrpc.IdentityServiceStub(self.channel)

    @property
    def interest(self) -> ingrpc.InterestServiceStub:
        return ingrpc.InterestServiceStub(self.channel)

    @property
    def lending(self) -> lgrpc.LendingServiceStub:
        return lgrpc.LendingServiceStub(self.channel)

    # --- what requests need ---------------------------------------------------------------------

    async def deposit(self, account_id: str, amount: str) -> None:
        request = apb.DepositRequest(request_id=f"rw-dep-{next(_ids)}", account_id=account_id, amount=eur(amount))
        await self.accounts.Deposit(request, metadata=await self.metadata(self.admin))

    async def withdraw(self, account_id: str, amount: str) -> None:
        """Alice takes money out of one of her accounts."""
        request = apb.WithdrawRequest(request_id=f"rw-wd-{next(_ids)}", account_id=account_id, amount=eur(amount))
        await self.accounts.Withdraw(request, metadata=await self.metadata(self.alice))

    async def savings(self, amount: str = "0.00") -> str:
        """A new savings account of Alice's (no overdraft: it cannot pay more than it holds)."""
        request = apb.OpenAccountRequest(
            request_id=f"rw-open-{next(_ids)}",
            customer_id=self.alice_customer,
            type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS,
            currency_code="EUR",
        )
        account = (await self.accounts.OpenAccount(request, metadata=await self.metadata(self.alice))).account.account_id
        if amount != "0.00":
            await self.deposit(account, amount)
        return account

    async def closed_account(self) -> str:
        account = await self.savings()
        request = apb.CloseAccountRequest(request_id=f"rw-close-{next(_ids)}", account_id=account)
        await self.accounts.CloseAccount(request, metadata=await self.metadata(self.alice))
        return account

    async def transfer(self, debit: str, credit: str, amount: str = "1.00") -> str:
        request = apb.TransferRequest(
            request_id=f"rw-trf-{next(_ids)}", debit_account_id=debit, credit_account_id=credit, amount=eur(amount)
        )
        return (await self.accounts.Transfer(request, metadata=await self.metadata(self.alice))).transfer.transfer_id

    async def hold(self) -> str:
        """A hold Alice places herself (so she resolves it herself): 1.00 for Bob."""
        request = apb.PlaceHoldRequest(
            request_id=f"rw-hold-{next(_ids)}",
            debit_account_id=self.alice_account,
            credit_account_id=self.bob_account,
            amount=eur("1.00"),
        )
        return (await self.accounts.PlaceHold(request, metadata=await self.metadata(self.alice))).hold.hold_id

    async def released_hold(self) -> str:
        hold_id = await self.hold()
        request = apb.ReleaseHoldRequest(request_id=f"rw-rel-{next(_ids)}", hold_id=hold_id)
        await self.accounts.ReleaseHold(request, metadata=await self.metadata(self.alice))
        return hold_id

    async def loan(self, stage: int) -> tuple[str, str]:
        """Alice's loan of 100.00 over 12 months, paid into a fresh savings account of hers,
        taken to `stage` (LOAN_STATUS_APPLIED, _APPROVED or _DISBURSED): (loan, account)."""
        account = await self.savings()
        applied = lpb.ApplyForLoanRequest(
            request_id=f"rw-apply-{next(_ids)}",
            customer_id=self.alice_customer,
            account_id=account,
            principal=eur("100.00"),
            term_months=12,
        )
        loan_id = (await self.lending.ApplyForLoan(applied, metadata=await self.metadata(self.alice))).loan.loan_id
        if stage in (lpb.LOAN_STATUS_APPROVED, lpb.LOAN_STATUS_DISBURSED):
            await self.approve(loan_id)
        if stage == lpb.LOAN_STATUS_DISBURSED:
            await self.disburse(loan_id)
        return loan_id, account

    async def approve(self, loan_id: str) -> None:
        request = lpb.ApproveLoanRequest(request_id=f"rw-approve-{next(_ids)}", loan_id=loan_id, annual_interest_rate="0.06")
        await self.lending.ApproveLoan(request, metadata=await self.metadata(self.admin))

    async def disburse(self, loan_id: str) -> None:
        request = lpb.DisburseLoanRequest(request_id=f"rw-disburse-{next(_ids)}", loan_id=loan_id)
        loan = (await self.lending.DisburseLoan(request, metadata=await self.metadata(self.admin))).loan
        assert loan.status == lpb.LOAN_STATUS_DISBURSED, loan

    async def user(self, role: int = ipb.ROLE_RELATIONSHIP_MANAGER) -> tuple[str, Who]:
        """A new staff user: (user id, the user as a principal)."""
        name = f"replayer-{next(_ids)}"
        request = ipb.CreateUserRequest(request_id=f"rw-{name}", username=name, password=PASSWORD, roles=[role])
        created = await self.identity.CreateUser(request, metadata=await self.metadata(self.admin))
        return created.user.user_id, Who(name, [PASSWORD])

    async def set_roles(self, user_id: str, role: int) -> None:
        request = ipb.UpdateUserRequest(request_id=f"rw-roles-{next(_ids)}", user_id=user_id, roles=[role])
        await self.identity.UpdateUser(request, metadata=await self.metadata(self.admin))

    async def reset_password(self, user_id: str, who: Who, password: str) -> None:
        """An admin sets the user's password (no current one needed); the user logs in with it."""
        request = ipb.ChangePasswordRequest(request_id=f"rw-reset-{next(_ids)}", user_id=user_id, new_password=password)
        await self.identity.ChangePassword(request, metadata=await self.metadata(self.admin))
        who.relogin(password)

    async def disabled_user(self) -> str:
        user_id, _ = await self.user()
        request = ipb.DisableUserRequest(request_id=f"rw-disable-{next(_ids)}", user_id=user_id)
        await self.identity.DisableUser(request, metadata=await self.metadata(self.admin))
        return user_id

    async def customer_in_review(self) -> str:
        """A customer whose name nearly matches the sanctions list: KYC in REVIEW until an admin decides."""
        request = onboarding(
            f"rw-near-{next(_ids)}", given_name="Viktor J.", family_name="Blackwood", document=document(fresh_document())
        )
        customer = (await self.customers.OnboardCustomer(request, metadata=await self.metadata(self.admin))).customer
        assert customer.kyc.status == cpb.KYC_STATUS_REVIEW, customer.kyc
        return customer.customer_id

    async def clear_kyc(self, customer_id: str) -> None:
        request = cpb.ReviewKycRequest(
            request_id=f"rw-clear-{next(_ids)}", customer_id=customer_id, decision=cpb.KYC_DECISION_CLEAR
        )
        await self.customers.ReviewKyc(request, metadata=await self.metadata(self.admin))

    async def alice_version(self) -> int:
        request = cpb.GetCustomerRequest(customer_id=self.alice_customer)
        return (await self.customers.GetCustomer(request, metadata=await self.metadata(self.admin))).customer.version


@dataclass(frozen=True)
class Sent:
    """A request, and the principal who sends it (again and again: the same principal)."""

    who: Who
    request: Message


@dataclass(frozen=True)
class Refused:
    """A request refused for the state it meets: `reason` is in its answer (an ErrorInfo reason,
    a field of a BadRequest, or a refusal the answer carries, as a payment's failure_reason).
    `allow` changes the state so that an identical new request succeeds; None where no state
    can (`final` says why)."""

    sent: Sent
    reason: str
    allow: Callable[[], Awaitable[None]] | None = None
    final: str = ""


Build = Callable[[ReplayWorld, str], Awaitable[Sent]]
Refuse = Callable[[ReplayWorld, str], Awaitable[Refused]]


@dataclass(frozen=True)
class Case:
    resource: Callable[[Any], str]  # the primary id of an OK answer (of a stream: of its messages)
    success: Build
    refusals: tuple[Refuse, ...] = ()
    no_refusal: str = ""  # why no refusal decided on state can be arranged
    outcome: Callable[[Any], str] | None = None  # what an OK answer says was done (a status): no deadline changes it


def rid(tag: str) -> str:
    return f"rp-{tag}"


async def build_world(bank: RunningBank, channel: aio.Channel) -> ReplayWorld:
    """Alice with 1,000.00 on her default account and a user to log in with; Bob with an account."""
    world = ReplayWorld(bank, channel, Who("admin", [ADMIN_PASSWORD]))
    async with bearer_channel(bank.target, await world.token(world.admin)) as admin_channel:
        admin = Bank(admin_channel)
        world.alice_customer = await admin.verified_customer(f"alice-{next(_ids)}")
        world.bob_customer = await admin.verified_customer(f"bob-{next(_ids)}")
        world.alice_account = (await admin.default_account(world.alice_customer)).account_id
        world.bob_account = (await admin.default_account(world.bob_customer)).account_id
    await world.deposit(world.alice_account, "1000.00")
    request = ipb.CreateUserRequest(
        request_id="rw-alice", username="alice", password=PASSWORD, roles=[ipb.ROLE_CUSTOMER], customer_id=world.alice_customer
    )
    await world.identity.CreateUser(request, metadata=await world.metadata(world.admin))
    world.alice = Who("alice", [PASSWORD])
    users = await world.identity.ListUsers(ipb.ListUsersRequest(), metadata=await world.metadata(world.admin))
    world.admin_id = next(u.user_id for u in users.users if u.username == "admin")
    return world
