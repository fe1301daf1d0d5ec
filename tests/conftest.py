"""Shared fixtures: a real embedded bank on a free loopback port, and its stubs."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc import aio

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder
from common.grpc.client import bearer_channel, open_channel
from mesh.embedded import RunningBank, start_embedded
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as customer_grpc
from ogpgy.identity.v1 import identity_service_pb2 as identity_pb
from ogpgy.identity.v1 import identity_service_pb2_grpc as identity_grpc
from ogpgy.type.v1 import address_pb2, date_pb2
from tests.servers import VOLATILE_DATABASE_ENV, PostgresServer, RedisServer

# The tests' PostgreSQL clusters run with fsync off; every bank the tests start (here or in a
# process of its own, which inherits the environment) is told it may use one.
os.environ.setdefault(VOLATILE_DATABASE_ENV, "true")
# The close of business would run on its own schedule in every bank the tests start and post a
# day's interest beside what a test asserts; a test of the scheduler turns it on.
os.environ.setdefault("OGPGY_CLOSE_OF_BUSINESS_SCHEDULER", "false")

# "Today" for every test that builds the bank: rules that depend on the date stay reproducible.
TODAY = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL cluster for the session; each test takes a fresh database."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()
    server.remove()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Embedded settings on each database engine: the same tests run on SQLite and PostgreSQL."""
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres").new_database()
        return Settings(data_dir=tmp_path, port=0, database="postgres", postgres_dsn=dsn, admin_password=ADMIN_PASSWORD)
    return Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD)


@pytest.fixture
async def bank(settings: Settings) -> AsyncIterator[RunningBank]:
    def fixed_clock(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, FixedClock(TODAY))

    running = await start_embedded(settings, customize=fixed_clock)
    yield running
    await running.stop(grace=1)


async def issue_token(
    target: str,
    username: str = "admin",
    password: str = ADMIN_PASSWORD,
    audience: str = "",
    tls: grpc.ChannelCredentials | None = None,
) -> str:
    async with open_channel(target, tls) as ch:
        request = identity_pb.IssueTokenRequest(username=username, password=password, audience=audience)
        return (await identity_grpc.IdentityServiceStub(ch).IssueToken(request)).access_token


@pytest.fixture
async def admin_token(bank: RunningBank) -> str:
    return await issue_token(bank.target)


@pytest.fixture
async def channel(bank: RunningBank, admin_token: str) -> AsyncIterator[aio.Channel]:
    """A channel that calls the bank as its first admin."""
    async with bearer_channel(bank.target, admin_token) as ch:
        yield ch


@pytest.fixture
def customers(channel: aio.Channel) -> customer_grpc.CustomerServiceStub:
    return customer_grpc.CustomerServiceStub(channel)


def onboarding(request_id: str, **overrides: object) -> customer_pb.OnboardCustomerRequest:
    """A valid onboarding request of an adult with a correct document; override any field."""
    fields: dict[str, object] = {
        "request_id": request_id,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "email": "ada@example.com",
        "phone": "+442071234567",
        "date_of_birth": date_pb2.Date(year=1990, month=12, day=10),
        "document": customer_pb.IdentityDocument(
            type=customer_pb.DOCUMENT_TYPE_PASSPORT, number="AB1234564", issuing_country_code="GB"
        ),
        "address": address_pb2.PostalAddress(lines=["12 St James Sq"], city="London", postal_code="SW1Y 4JH", country_code="GB"),
    }
    fields.update(overrides)
    return customer_pb.OnboardCustomerRequest(**fields)


def document(number: str) -> customer_pb.IdentityDocument:
    return customer_pb.IdentityDocument(type=customer_pb.DOCUMENT_TYPE_PASSPORT, number=number, issuing_country_code="GB")
