"""Daily interest for N interest-bearing accounts through the API (RunDailyInterest over gRPC),
beside the set-based SQL floor measured in the same run.

The floor is the least SQL that could post the day on the same data: one INSERT ... SELECT of the
entries and one UPDATE of the balances, in one transaction, on the bank's own tables (the same
rows, indexes and constraints) right after the API run, with the bank's own interest expression.
For reference the table also shows that floor on two bare tables (id and balance only), which
is what a bank without a ledger's rows, indexes and foreign keys would pay.

Usage: .venv/bin/python scripts/bench/interest.py [--accounts 1000000] [--engine sqlite|postgres|both]
Seeding writes accounts straight into the account context's tables (it is setup, not measured):
the seeded balances are offset on the cash account so the books still sum to zero.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import psycopg  # noqa: E402

from kernel.interest import InterestTier  # noqa: E402
from mesh.local_servers import PostgresServer  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2 as ipb  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc  # noqa: E402
from ogpgy.type.v1 import date_pb2  # noqa: E402
from scripts.bench.harness import bank_process  # noqa: E402
from services.account.bulk_postings import interest_sql  # noqa: E402
from tests.bank_helpers import admin_channel  # noqa: E402

FEATURES = '{"annual_interest_rate": "0.015", "free_transactions_per_month": 6, "interest_bearing": true, "minimum_balance": 0, "monthly_fee": 0, "overdraft_limit": 0, "overdraft_protection": false}'
SEED_SQL = (
    "INSERT INTO accounts (account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor,"
    " floor_minor, opened_at, interest_bearing) VALUES (?, 'cus_bench', 'PERSONAL_SAVINGS', 'OPEN', 'EUR', ?, ?, 0, 0,"
    " '2026-01-01T00:00:00+00:00', 1)"
)
# The floor: the bank's tiered rule (services/interest/tiers.toml), as one UPDATE and one INSERT ... SELECT.
FLOOR_INTEREST = interest_sql(
    (InterestTier(100_000, Decimal("0.005")), InterestTier(1_000_000, Decimal("0.015")), InterestTier(None, Decimal("0.025")))
)
ELIGIBLE = f"interest_bearing = 1 AND status = 'OPEN' AND currency = 'EUR' AND {FLOOR_INTEREST} > 0"
FLOOR_SQL = (
    "INSERT INTO transfers (transfer_id, debit_account_id, credit_account_id, amount_minor, currency, description, posted_at)"
    " VALUES ('trf_FLOOR', 'acc_INTEREST_EXPENSE_EUR', 'acc_CASH_EUR', 1, 'EUR', 'floor', 'd')",
    "INSERT INTO entries (account_id, transfer_id, amount_minor, balance_after_minor, counterparty_account_id, description,"
    f" posted_at) SELECT account_id, 'trf_FLOOR', {FLOOR_INTEREST}, balance_minor + {FLOOR_INTEREST},"
    f" 'acc_INTEREST_EXPENSE_EUR', 'interest 2026-06-16', 'd' FROM accounts WHERE {ELIGIBLE}",
    f"UPDATE accounts SET balance_minor = balance_minor + {FLOOR_INTEREST} WHERE {ELIGIBLE}",
)


def balances(n: int) -> list[int]:
    rng = random.Random(11)
    return [
        rng.choice([0, rng.randint(1, 100_000), rng.randint(100_001, 1_000_000), rng.randint(1_000_001, 50_000_000)])
        for _ in range(n)
    ]


def seed_rows(values: list[int]) -> list[tuple[str, str, int]]:
    return [(f"acc_BENCH{i:016d}", FEATURES, b) for i, b in enumerate(values)]


def floor_on_bank_sqlite(db: Path) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    for statement in FLOOR_SQL:
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def floor_on_bank_postgres(dsn: str) -> float:
    with psycopg.connect(dsn, options="-c search_path=account") as conn:
        started = time.perf_counter()
        with conn.transaction():
            for statement in FLOOR_SQL:
                conn.execute(statement)
        return time.perf_counter() - started


def floor_sqlite(values: list[int]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # as the bank: every commit synced
        conn.execute("CREATE TABLE accounts (account_id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL)")
        conn.execute(
            "CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT, amount_minor BIGINT, posted_at TEXT)"
        )
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(f"acc_{i:016d}", b) for i, b in enumerate(values)])
        conn.execute("COMMIT")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"INSERT INTO entries (account_id, amount_minor, posted_at) SELECT account_id, {FLOOR_INTEREST}, 'd'"
            " FROM accounts WHERE balance_minor > 0"
        )
        conn.execute(f"UPDATE accounts SET balance_minor = balance_minor + {FLOOR_INTEREST} WHERE balance_minor > 0")
        conn.execute("COMMIT")
        return time.perf_counter() - started


def floor_postgres(dsn: str, values: list[int]) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (account_id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL)")
        conn.execute("CREATE TABLE entries (seq BIGSERIAL PRIMARY KEY, account_id TEXT, amount_minor BIGINT, posted_at TEXT)")
        with conn.cursor().copy("COPY accounts FROM STDIN") as copy:
            for i, b in enumerate(values):
                copy.write_row((f"acc_{i:016d}", b))
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(
                f"INSERT INTO entries (account_id, amount_minor, posted_at) SELECT account_id, {FLOOR_INTEREST}, 'd'"
                " FROM accounts WHERE balance_minor > 0"
            )
            conn.execute(f"UPDATE accounts SET balance_minor = balance_minor + {FLOOR_INTEREST} WHERE balance_minor > 0")
        return time.perf_counter() - started


def seed_sqlite(db: Path, values: list[int]) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=60)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(SEED_SQL, seed_rows(values))
    conn.execute("UPDATE accounts SET balance_minor = balance_minor - ? WHERE account_id = 'acc_CASH_EUR'", (sum(values),))
    conn.execute("COMMIT")
    conn.close()


def seed_postgres(dsn: str, values: list[int]) -> None:
    with psycopg.connect(dsn, options="-c search_path=account") as conn:
        with conn.cursor().copy(
            "COPY accounts (account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor,"
            " floor_minor, opened_at, interest_bearing) FROM STDIN"
        ) as copy:
            for account_id, features, balance in seed_rows(values):
                copy.write_row(
                    (
                        account_id,
                        "cus_bench",
                        "PERSONAL_SAVINGS",
                        "OPEN",
                        "EUR",
                        features,
                        balance,
                        0,
                        0,
                        "2026-01-01T00:00:00+00:00",
                        1,
                    )
                )
        conn.execute("UPDATE accounts SET balance_minor = balance_minor - %s WHERE account_id = 'acc_CASH_EUR'", (sum(values),))


async def run_api(target: str) -> tuple[float, ipb.InterestRun]:
    async with admin_channel(target) as channel:
        started = time.perf_counter()
        last = None
        async for answer in igrpc.InterestServiceStub(channel).RunDailyInterest(
            ipb.RunDailyInterestRequest(request_id="bench", business_date=date_pb2.Date(year=2026, month=6, day=15)), timeout=3600
        ):
            last = answer.run
        return time.perf_counter() - started, last


@dataclass
class Measured:
    api: float
    floor: float
    bare_floor: float
    processed: int


def measure(engine: str, values: list[int], chunk: int) -> Measured:
    postgres = PostgresServer() if engine == "postgres" else None
    with tempfile.TemporaryDirectory() as data_dir:
        extra: list[str] = []
        if postgres:
            postgres.start()
            extra = ["--postgres-dsn", postgres.new_database()]
        try:
            with bank_process(data_dir, "--interest-chunk", str(chunk), *extra) as target:
                if postgres:
                    seed_postgres(extra[1], values)
                else:
                    seed_sqlite(Path(data_dir) / "account.db", values)
                api_seconds, run = asyncio.run(run_api(target))
            if postgres:
                floor, bare = floor_on_bank_postgres(extra[1]), floor_postgres(postgres.new_database(), values)
            else:
                floor, bare = floor_on_bank_sqlite(Path(data_dir) / "account.db"), floor_sqlite(values)
        finally:
            if postgres:
                postgres.stop()
                postgres.remove()
    return Measured(api_seconds, floor, bare, run.processed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    values = balances(args.accounts)
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    print(
        f"{'engine':<10} {'accounts':>10} {'API s':>8} {'floor s':>8} {'API/floor':>10} {'accounts/s':>11}"
        f" {'bare floor s':>13} {'API/bare':>9}"
    )
    for engine in engines:
        m = measure(engine, values, args.chunk)
        print(
            f"{engine:<10} {m.processed:>10} {m.api:>8.2f} {m.floor:>8.2f} {m.api / m.floor:>9.2f}x {m.processed / m.api:>11.0f}"
            f" {m.bare_floor:>13.2f} {m.api / m.bare_floor:>8.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
