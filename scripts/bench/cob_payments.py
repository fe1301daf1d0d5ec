"""Online payments during a close of business, beside the same payments outside one (same bank,
same data, same run): CreatePayment p50/p99 and throughput at a fixed concurrency, and how long
the close of several missed business dates took.

The bank runs as `ogpgy up` (embedded; its in-process scheduler off, so the close starts when the
script asks) with `first_business_date` --days-back calendar days ago, so CloseBusinessDay has
that many days of interest to post (a weekend's and a holiday's interest at the next close). The
interest-bearing accounts are seeded straight into the account context's tables, as
scripts/bench/interest.py does (setup, not measured). Rows: payments before the close, during it
(the window starts once the close is under way; the script says whether the close outlasted it),
and after it (on the data the close grew).

Usage: .venv/bin/python scripts/bench/cob_payments.py [--accounts 50000] [--seconds 10] [--in-flight 16]
  [--days-back 8] [--engine sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from grpc import aio  # noqa: E402

from mesh.local_servers import PostgresServer  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2 as ipb  # noqa: E402
from ogpgy.interest.v1 import interest_service_pb2_grpc as igrpc  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2 as ppb  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc  # noqa: E402
from scripts.bench.harness import BANK_READY, Result, bank_command, bank_env, closed_loop, server_process  # noqa: E402
from scripts.bench.interest import balances, seed_postgres, seed_sqlite  # noqa: E402
from scripts.bench.payments import funded_accounts  # noqa: E402
from tests.bank_helpers import admin_channel, eur, generous_fraud_rules  # noqa: E402


def payment_load(
    channel: aio.Channel, accounts: list[str], tag: str
) -> tuple[pgrpc.PaymentServiceStub, Callable[[int], Awaitable[object]]]:
    stub, rng = pgrpc.PaymentServiceStub(channel), random.Random(tag)

    async def one(i: int) -> object:
        debtor = rng.choice(accounts)
        creditor = rng.choice([a for a in accounts if a != debtor])
        request = ppb.CreatePaymentRequest(
            request_id=f"{tag}-{i}",
            debtor_account_id=debtor,
            amount=eur("1.00"),
            internal=ppb.InternalBeneficiary(account_id=creditor),
        )
        return await stub.CreatePayment(request, timeout=60)

    return stub, one


async def measure(target: str, seconds: float, in_flight: int) -> tuple[list[Result], float, int, bool]:
    """(rows, the close's seconds, dates it closed, whether it outlasted the window)."""
    async with admin_channel(target) as channel:
        accounts = await funded_accounts(channel, "cob")
        days = igrpc.InterestServiceStub(channel)
        _, before = payment_load(channel, accounts, "before")
        rows = [await closed_loop("payments, no close", before, in_flight, seconds)]

        closed: list[ipb.BusinessDayClose] = []
        ended: list[float] = []

        async def close() -> None:
            request = ipb.CloseBusinessDayRequest(request_id="bench-close", currency_code="EUR")
            async for answer in days.CloseBusinessDay(request, timeout=7200):
                if answer.close.completed:
                    closed.append(answer.close)
            ended.append(time.perf_counter())

        started = time.perf_counter()
        closing = asyncio.create_task(close())
        _, during = payment_load(channel, accounts, "during")
        rows.append(await closed_loop("payments, close running", during, in_flight, seconds))
        outlasted = not closing.done()
        await closing
        close_seconds = ended[0] - started
        _, after = payment_load(channel, accounts, "after")
        rows.append(await closed_loop("payments, after the close", after, in_flight, seconds))
        return (
            rows,
            close_seconds,
            len({(c.business_date.year, c.business_date.month, c.business_date.day) for c in closed}),
            outlasted,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--days-back", type=int, default=8)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    first = (datetime.now(UTC) - timedelta(days=args.days_back)).date()
    env = {**bank_env(), "OGPGY_CLOSE_OF_BUSINESS_SCHEDULER": "false", "OGPGY_FIRST_BUSINESS_DATE": first.isoformat()}
    postgres = PostgresServer() if args.engine == "postgres" else None
    with tempfile.TemporaryDirectory() as data_dir:
        extra = ["--fraud-rules", str(generous_fraud_rules(Path(data_dir)))]
        if postgres is not None:
            postgres.start()
            extra += ["--postgres-dsn", postgres.new_database()]
        try:
            with server_process(bank_command(data_dir, *extra), BANK_READY, env) as target:
                values = balances(args.accounts)
                if postgres is not None:
                    seed_postgres(extra[-1], values)
                else:
                    seed_sqlite(Path(data_dir) / "account.db", values)
                rows, close_seconds, dates, outlasted = asyncio.run(measure(target, args.seconds, args.in_flight))
        finally:
            if postgres is not None:
                postgres.stop()
                postgres.remove()
    base = rows[0]
    print(f"engine {args.engine}, {args.accounts} interest-bearing accounts, first business date {first}")
    header = (
        f"{'payments':<28} {'in flight':>9} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'QPS/base':>9} {'p99/base':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:<28} {r.in_flight:>9} {r.qps:>8.0f} {r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} {r.errors:>7}"
            f" {r.qps / base.qps:>8.0%} {r.percentile(0.99) / base.percentile(0.99):>8.1f}x"
        )
    window = "the whole window" if outlasted else "ended inside the window: the 'during' row is partly outside it"
    print(f"close of business: {dates} business dates in {close_seconds:.1f} s ({window})")


if __name__ == "__main__":
    main()
