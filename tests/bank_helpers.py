"""Helpers for tests that drive the bank over gRPC: stubs, money, a verified customer's account."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc import aio

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.grpc.client import bearer_channel
from mesh.embedded import start_embedded
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1 import identity_service_pb2_grpc as igrpc
from ogpgy.type.v1.money_pb2 import Money
from services.customer.domain import check_digit
from tests.conftest import document, issue_token, onboarding

_documents = itertools.count(1)


@asynccontextmanager
async def admin_channel(
    target: str, tls: grpc.ChannelCredentials | None = None, token_target: str = ""
) -> AsyncIterator[aio.Channel]:
    """A channel to a running bank, as its first admin (its token from `token_target`, the
    identity context's address when that is elsewhere)."""
    async with bearer_channel(target, await issue_token(token_target or target, tls=tls), tls) as channel:
        yield channel


async def eventually(check: Callable[[], Awaitable[object]], within: float = 15.0, what: str = "the condition") -> None:
    """Waits until `check()` is true (what another task, process or server does meanwhile)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"{what} not reached within {within}s"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def bank_on_clock(settings: Settings, clock: FixedClock) -> AsyncIterator[aio.Channel]:
    """An embedded bank whose clock the test moves (to make months pass), as its first admin."""

    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, clock)

    bank = await start_embedded(settings, customize=movable)
    try:
        async with admin_channel(bank.target) as channel:
            yield channel
    finally:
        await bank.stop(grace=1)


def eur(amount: str) -> Money:
    return Money(currency_code="EUR", amount=amount)


def fresh_document() -> str:
    body = f"TT{next(_documents):06d}"
    return f"{body}{check_digit(body)}"


async def create_user(identity: igrpc.IdentityServiceStub, name: str, role: int, password: str, customer_id: str = "") -> str:
    """A user of the bank (made by an admin's identity stub); its id."""
    request = ipb.CreateUserRequest(
        request_id=f"user-{name.replace('.', '-')}", username=name, password=password, roles=[role], customer_id=customer_id
    )
    return (await identity.CreateUser(request)).user.user_id


def generous_fraud_rules(folder: Path) -> Path:
    """Fraud limits a load test does not hit (the shipped rules allow 10 payments an hour)."""
    path = folder / "fraud.toml"
    path.write_text(
        'max_amount = "10000.00"\nwindow_seconds = 60\nmax_payments_per_window = 1000000\n'
        'max_amount_per_window = "100000000.00"\n'
    )
    return path


class Bank:
    """The stubs a client of the bank uses."""

    def __init__(self, channel: aio.Channel) -> None:
        self.customers = cgrpc.CustomerServiceStub(channel)
        self.accounts = agrpc.AccountServiceStub(channel)

    async def verified_customer(self, tag: str) -> str:
        request = onboarding(f"cus-{tag}", document=document(fresh_document()))
        return (await self.customers.OnboardCustomer(request)).customer.customer_id

    async def default_account(self, customer_id: str, within: float = 10.0) -> apb.Account:
        """The account opened by the CustomerOnboarded reaction (waits for the event to flow)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            listed = await self.accounts.ListAccounts(apb.ListAccountsRequest(customer_id=customer_id))
            if listed.accounts:
                return listed.accounts[0]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no default account for {customer_id} within {within}s")
            await asyncio.sleep(0.02)

    async def open(self, customer_id: str, tag: str, type_: int = apb.ACCOUNT_TYPE_PERSONAL_SAVINGS) -> str:
        request = apb.OpenAccountRequest(request_id=f"open-{tag}", customer_id=customer_id, type=type_, currency_code="EUR")
        return (await self.accounts.OpenAccount(request)).account.account_id

    async def deposit(self, account_id: str, amount: str, tag: str) -> None:
        await self.accounts.Deposit(apb.DepositRequest(request_id=f"dep-{tag}", account_id=account_id, amount=eur(amount)))

    async def balance(self, account_id: str) -> tuple[str, str]:
        account = (await self.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id))).account
        return account.balance.amount, account.available_balance.amount
