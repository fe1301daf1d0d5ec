"""Daily interest for N interest-bearing accounts through the API (RunDailyInterest over gRPC),
beside the set-based SQL floor on the same data: one UPDATE of the balances and one
INSERT ... SELECT of the entries, in one transaction, measured in the same run.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import psycopg  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2 as ipb  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc  # noqa: E402
from ogpgy.type.v1 import date_pb2  # noqa: E402

from scripts.bench.harness import PYTHON, server_process  # noqa: E402
from tests.bank_helpers import admin_channel  # noqa: E402
from tests.conftest import ADMIN_PASSWORD  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

FEATURES = '{"annual_interest_rate": "0.015", "free_transactions_per_month": 6, "interest_bearing": true, "minimum_balance": 0, "monthly_fee": 0, "overdraft_limit": 0, "overdraft_protection": false}'
SEED_SQL = (
    "INSERT INTO accounts (account_id, customer_id, type, status, currency, features_json, balance_minor, held_minor,"
    " floor_minor, opened_at, interest_bearing) VALUES (?, 'cus_bench', 'PERSONAL_SAVINGS', 'OPEN', 'EUR', ?, ?, 0, 0,"
    " '2026-01-01T00:00:00+00:00', 1)"
)
# The floor: the same tiered rule, as one UPDATE and one INSERT ... SELECT.
FLOOR_INTEREST = ("CAST(ROUND(balance_minor * (CASE WHEN balance_minor <= 100000 THEN 0.005 WHEN balance_minor <= 1000000"
                  " THEN 0.015 ELSE 0.025 END) / 365.0) AS BIGINT)")  # fmt: skip


def balances(n: int) -> list[int]:
    rng = random.Random(11)
    return [rng.choice([0, rng.randint(1, 100_000), rng.randint(100_001, 1_000_000), rng.randint(1_000_001, 50_000_000)]) for _ in range(n)]


def seed_rows(values: list[int]) -> list[tuple[str, str, int]]:
    return [(f"acc_BENCH{i:016d}", FEATURES, b) for i, b in enumerate(values)]


def floor_sqlite(values: list[int]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE accounts (account_id TEXT PRIMARY KEY, balance_minor BIGINT NOT NULL)")
        conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT, amount_minor BIGINT, posted_at TEXT)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(f"acc_{i:016d}", b) for i, b in enumerate(values)])
        conn.execute("COMMIT")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO entries (account_id, amount_minor, posted_at) SELECT account_id, {FLOOR_INTEREST}, 'd'"
                     " FROM accounts WHERE balance_minor > 0")  # fmt: skip
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
            conn.execute(f"INSERT INTO entries (account_id, amount_minor, posted_at) SELECT account_id, {FLOOR_INTEREST}, 'd'"
                         " FROM accounts WHERE balance_minor > 0")  # fmt: skip
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
                copy.write_row((account_id, "cus_bench", "PERSONAL_SAVINGS", "OPEN", "EUR", features, balance, 0, 0,
                                "2026-01-01T00:00:00+00:00", 1))  # fmt: skip
        conn.execute("UPDATE accounts SET balance_minor = balance_minor - %s WHERE account_id = 'acc_CASH_EUR'", (sum(values),))


async def run_api(target: str) -> tuple[float, ipb.InterestRun]:
    async with admin_channel(target) as channel:
        started = time.perf_counter()
        last = None
        async for answer in igrpc.InterestServiceStub(channel).RunDailyInterest(ipb.RunDailyInterestRequest(
                request_id="bench", business_date=date_pb2.Date(year=2026, month=6, day=15)), timeout=3600):  # fmt: skip
            last = answer.run
        return time.perf_counter() - started, last  # type: ignore[return-value]


def measure(engine: str, values: list[int], chunk: int) -> tuple[float, float, int]:
    postgres = PostgresServer() if engine == "postgres" else None
    with tempfile.TemporaryDirectory() as data_dir:
        extra: list[str] = []
        if postgres:
            postgres.start()
            extra = ["--postgres-dsn", postgres.new_database()]
        try:
            with server_process([PYTHON, "-m", "mesh.cli", "--log-level", "WARNING", "up", "--port", "0", "--data-dir", data_dir,
                                 "--admin-password", ADMIN_PASSWORD, "--interest-chunk", str(chunk), *extra],
                                r"serving .* on (127\.0\.0\.1:\d+)") as target:  # fmt: skip
                if postgres:
                    seed_postgres(extra[1], values)
                else:
                    seed_sqlite(Path(data_dir) / "account.db", values)
                api_seconds, run = asyncio.run(run_api(target))
            floor = floor_postgres(postgres.new_database(), values) if postgres else floor_sqlite(values)
        finally:
            if postgres:
                postgres.stop()
                postgres.remove()
    return api_seconds, floor, run.processed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    values = balances(args.accounts)
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    print(f"{'engine':<10} {'accounts':>10} {'API s':>8} {'floor s':>8} {'API/floor':>10} {'accounts/s':>11}")
    for engine in engines:
        api, floor, processed = measure(engine, values, args.chunk)
        print(f"{engine:<10} {processed:>10} {api:>8.1f} {floor:>8.2f} {api / floor:>9.1f}x {processed / api:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
