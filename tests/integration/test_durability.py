"""Acknowledged means durable: what the bank answered OK survives an OS crash or a power loss, not
only a crash of its own process. Embedded SQLite ran WAL with synchronous=NORMAL, which syncs only
at checkpoints: the last commits, payments answered OK, could roll back after a power loss. Every
connection the bank opens now syncs the WAL at each commit (FULL); a PostgreSQL server that may lose
what it acknowledged (fsync, full_page_writes or synchronous_commit off) is refused at start, or
accepted with a WARNING when the bank is told it is a throw-away cluster."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from common.config import Settings
from common.di.errors import LifecycleError
from common.grpc.client import bearer_channel
from mesh.embedded import start_embedded
from mesh.local_servers import PostgresServer as DurablePostgresServer
from ogpgy.customer.v1 import customer_service_pb2 as customer_pb
from ogpgy.customer.v1 import customer_service_pb2_grpc as customer_grpc
from tests.conftest import ADMIN_PASSWORD, issue_token, onboarding
from tests.servers import VOLATILE_DATABASE_ENV, PostgresServer

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA
NOT_DURABLE = "NOT DURABLE"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[sqlite3.Connection]:
    """Every SQLite connection opened in this process from now on (real ones, only recorded)."""
    connections: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def recorded(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        connections.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", recorded)
    return connections


def _databases(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.db")}


async def test_every_sqlite_connection_the_bank_opens_syncs_each_commit(tmp_path: Path, opened: list[sqlite3.Connection]) -> None:
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD))
    try:
        async with bearer_channel(bank.target, await issue_token(bank.target)) as channel:
            customers = customer_grpc.CustomerServiceStub(channel)
            customer = (await customers.OnboardCustomer(onboarding("durable-1"))).customer  # writes, and events
            await customers.GetCustomer(customer_pb.GetCustomerRequest(customer_id=customer.customer_id))  # a read
        files = {Path(conn.execute("PRAGMA database_list").fetchone()[2]).name for conn in opened}
        assert files >= _databases(tmp_path) and len(files) >= 7, "every context's database"
        modes = [
            (conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0])
            for conn in opened
        ]
        assert modes == [("wal", FULL)] * len(opened), "WAL, synced at every commit, on every connection"
    finally:
        await bank.stop(grace=1)


@pytest.fixture(scope="module")
def durable_postgres() -> Iterator[DurablePostgresServer]:
    """A cluster as a bank's should be: fsync, full_page_writes and synchronous_commit on."""
    server = DurablePostgresServer()
    server.start()
    yield server
    server.stop()
    server.remove()


def _settings(tmp_path: Path, dsn: str, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, port=0, database="postgres", postgres_dsn=dsn, admin_password=ADMIN_PASSWORD, **overrides)


async def _refusal(settings: Settings) -> str:
    with pytest.raises(LifecycleError) as refused:  # what a component raised at start, named
        bank = await start_embedded(settings)
        await bank.stop(grace=1)
    return str(refused.value)


async def test_a_postgresql_server_with_fsync_off_is_refused_unless_the_bank_is_told(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(VOLATILE_DATABASE_ENV)  # the default, as a bank is deployed
    refusal = await _refusal(_settings(tmp_path / "refused", postgres.new_database()))
    assert "runs with fsync=off:" in refusal and "allow_volatile_database" in refusal, refusal

    caplog.set_level(logging.WARNING)
    told = await start_embedded(_settings(tmp_path / "told", postgres.new_database(), allow_volatile_database=True))
    await told.stop(grace=1)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and NOT_DURABLE in r.getMessage()]
    assert warned and "fsync=off" in warned[0], "it says so at start"


async def test_synchronous_commit_off_is_refused_and_a_durable_server_is_taken_quietly(
    tmp_path: Path, durable_postgres: DurablePostgresServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(VOLATILE_DATABASE_ENV)
    lax = durable_postgres.new_database()
    with psycopg.connect(lax, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {lax.rsplit('/', 1)[1]} SET synchronous_commit = off")
    refusal = await _refusal(_settings(tmp_path / "lax", lax))
    assert "runs with synchronous_commit=off:" in refusal, refusal

    caplog.set_level(logging.WARNING)
    bank = await start_embedded(_settings(tmp_path / "durable", durable_postgres.new_database()))
    await bank.stop(grace=1)
    assert not [r for r in caplog.records if NOT_DURABLE in r.getMessage()]
