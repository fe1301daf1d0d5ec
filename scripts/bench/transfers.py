"""Ledger transfers per second through gRPC, on SQLite and on PostgreSQL, each beside the raw
database transaction rate of the same SQL (measured in the same run) and a bare grpc.aio echo.

Usage: .venv/bin/python scripts/bench/transfers.py [--seconds 5] [--in-flight 64] [--skip-postgres]
The bank runs as `ogpgy up` in its own process; PostgreSQL is a throw-away cluster started here.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from grpc import aio

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import psycopg  # noqa: E402

from mesh.local_servers import PostgresServer  # noqa: E402
from ogpgy.account.v1 import account_service_pb2 as apb  # noqa: E402
from scripts.bench.harness import PYTHON, Result, bank_process, closed_loop, print_table, server_process  # noqa: E402
from tests.bank_helpers import Bank, admin_channel, eur  # noqa: E402

ACCOUNTS = 64

# The statements one transfer costs, as the ledger issues them (two guarded balance updates,
# the transfer row and its two entries), without gRPC, Python domain code or idempotency.
RAW = [
    "UPDATE accounts SET balance = balance - 1 WHERE id = {a} AND balance - 1 >= 0",
    "UPDATE accounts SET balance = balance + 1 WHERE id = {b}",
    "INSERT INTO transfers (debit, credit, amount, posted_at) VALUES ({a}, {b}, 1, '2026-01-01T00:00:00')",
    "INSERT INTO entries (account, amount, posted_at) VALUES ({a}, -1, '2026-01-01T00:00:00')",
    "INSERT INTO entries (account, amount, posted_at) VALUES ({b}, 1, '2026-01-01T00:00:00')",
]
RAW_SCHEMA = [
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)",
    "CREATE TABLE transfers (id {serial}, debit INTEGER, credit INTEGER, amount BIGINT, posted_at TEXT)",
    "CREATE TABLE entries (id {serial}, account INTEGER, amount BIGINT, posted_at TEXT)",
]


def raw_sqlite(seconds: float) -> Result:
    """One connection, WAL, synchronous=FULL (as the bank): the engine's own rate for this transaction."""
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # as the bank: every commit synced
        for statement in RAW_SCHEMA:
            conn.execute(statement.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, 10**9) for i in range(ACCOUNTS)])
        rng, done, latencies = random.Random(1), 0, []
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            a, b = rng.sample(range(ACCOUNTS), 2)
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            for statement in RAW:
                conn.execute(statement.format(a=a, b=b))
            conn.execute("COMMIT")
            latencies.append((time.perf_counter() - started) * 1000)
            done += 1
        conn.close()
    return Result("raw SQLite transaction", 1, done, seconds, latencies, 0)


async def raw_postgres(dsn: str, seconds: float, in_flight: int) -> Result:
    """The same transaction on an async psycopg pool of 8, `in_flight` at once."""
    from psycopg_pool import AsyncConnectionPool

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for statement in RAW_SCHEMA:
            await conn.execute(statement.format(serial="BIGSERIAL PRIMARY KEY"))
        for i in range(ACCOUNTS):
            await conn.execute("INSERT INTO accounts VALUES (%s, %s)", (i, 10**9))
    rng = random.Random(1)
    async with AsyncConnectionPool(dsn, min_size=8, max_size=8) as pool:

        async def one(_: int) -> None:
            a, b = sorted(rng.sample(range(ACCOUNTS), 2))
            async with pool.connection() as conn, conn.transaction():
                for statement in RAW:
                    await conn.execute(statement.format(a=a, b=b))

        return await closed_loop("raw PostgreSQL transaction", one, in_flight, seconds)


async def echo(target: str, seconds: float, in_flight: int) -> Result:
    async with aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Echo/Echo")
        return await closed_loop("bare grpc.aio echo", lambda i: call(b"x" * 200), in_flight, seconds)


async def transfers(target: str, name: str, seconds: float, in_flight: int) -> Result:
    async with admin_channel(target) as channel:
        client = Bank(channel)
        accounts = []
        for i in range(ACCOUNTS // 4):
            customer = await client.verified_customer(f"bench-{i}")
            accounts.append((await client.default_account(customer)).account_id)
            await client.deposit(accounts[-1], "1000000.00", f"bench-{i}")
        rng = random.Random(2)

        async def one(i: int) -> object:
            a, b = rng.sample(accounts, 2)
            request = apb.TransferRequest(request_id=f"b-{i}", debit_account_id=a, credit_account_id=b, amount=eur("0.01"))
            return await client.accounts.Transfer(request)

        return await closed_loop(name, one, in_flight, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    rows: list[Result] = []
    with server_process([PYTHON, str(ROOT / "scripts/bench/echo_server.py")], r"on (127\.0\.0\.1:\d+)") as target:
        rows.append(asyncio.run(echo(target, args.seconds, args.in_flight)))
    rows.append(raw_sqlite(args.seconds))
    with tempfile.TemporaryDirectory() as data_dir, bank_process(data_dir) as target:
        rows.append(asyncio.run(transfers(target, "Transfer via gRPC (SQLite)", args.seconds, args.in_flight)))
    if not args.skip_postgres:
        postgres = PostgresServer()
        postgres.start()
        try:
            rows.append(asyncio.run(raw_postgres(postgres.new_database(), args.seconds, args.in_flight)))
            with (
                tempfile.TemporaryDirectory() as data_dir,
                bank_process(data_dir, "--postgres-dsn", postgres.new_database()) as target,
            ):
                rows.append(asyncio.run(transfers(target, "Transfer via gRPC (PostgreSQL)", args.seconds, args.in_flight)))
        finally:
            postgres.stop()
            postgres.remove()
    print_table(rows, {args.in_flight: rows[0]})


if __name__ == "__main__":
    main()
