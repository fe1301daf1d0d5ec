"""Internal payments per second and latency in each deployment of the same code, in one run:
embedded with colocated (in-process) calls, embedded with calls over the server's socket, and
distributed (one process per context, Redis, PostgreSQL); and each mode's time from start to
every process SERVING. The embedded rows use PostgreSQL like the distributed one, so that only the
deployment differs, and once more with embedded mode's defaults (SQLite, in-memory bus).

Usage: .venv/bin/python scripts/bench/modes.py [--seconds 5] [--in-flight 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import grpc  # noqa: E402

from common.grpc.channels import DEFAULT_CHANNEL_OPTIONS  # noqa: E402
from common.grpc.client import bearer_interceptors, open_channel  # noqa: E402
from mesh.embedded import CONTEXT_NAMES  # noqa: E402
from mesh.local_servers import PostgresServer  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2_grpc as cgrpc  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2 as ppb  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc  # noqa: E402
from scripts.bench.harness import BANK_READY, Result, bank_command, bank_env, closed_loop  # noqa: E402
from tests.bank_helpers import Bank, eur, generous_fraud_rules  # noqa: E402
from tests.conftest import ADMIN_PASSWORD, issue_token  # noqa: E402
from tests.local_mesh import loopback_mesh  # noqa: E402


async def internal_payments(
    targets: dict[str, str], seconds: float, in_flight: int, tls: grpc.ChannelCredentials | None = None
) -> Result:
    token = await issue_token(targets["identity"], password=ADMIN_PASSWORD, tls=tls)
    interceptors = bearer_interceptors(token)
    channels = {
        t: open_channel(t, tls, options=DEFAULT_CHANNEL_OPTIONS, interceptors=interceptors) for t in set(targets.values())
    }
    try:
        client = Bank(channels[targets["account"]])
        client.customers = cgrpc.CustomerServiceStub(channels[targets["customer"]])
        accounts = []
        for i in range(32):
            accounts.append((await client.default_account(await client.verified_customer(f"bm-{i}"), within=30)).account_id)
            await client.deposit(accounts[-1], "1000000.00", f"bm-{i}")
        stub = pgrpc.PaymentServiceStub(channels[targets["payment"]])
        rng = random.Random(5)

        async def one(i: int) -> object:
            debtor = rng.choice(accounts)
            credit = rng.choice([a for a in accounts if a != debtor])
            return await stub.CreatePayment(
                ppb.CreatePaymentRequest(
                    request_id=f"m-{i}",
                    debtor_account_id=debtor,
                    internal=ppb.InternalBeneficiary(account_id=credit),
                    amount=eur("1.00"),
                )
            )

        return await closed_loop("internal payment", one, in_flight, seconds, warmup=1.0)
    finally:
        for channel in channels.values():
            await channel.close()


def embedded(dsn: str, rules: Path, colocated: bool, seconds: float, in_flight: int) -> tuple[float, Result]:
    with tempfile.TemporaryDirectory() as data_dir:
        extra = ([] if colocated else ["--loopback-calls"]) + (["--postgres-dsn", dsn] if dsn else [])
        started = time.monotonic()
        proc = subprocess.Popen(
            bank_command(data_dir, "--fraud-rules", str(rules), *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, **bank_env()},
        )
        try:
            assert proc.stdout is not None
            target = next(m.group(1) for line in proc.stdout if (m := re.search(BANK_READY, line)))
            ready = time.monotonic() - started
            return ready, asyncio.run(internal_payments({c: target for c in CONTEXT_NAMES}, seconds, in_flight))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def distributed(dsn: str, seconds: float, in_flight: int, mutual_tls: bool = True) -> tuple[float, Result]:
    mesh = loopback_mesh("ogpgy-bench-mesh-", postgres=dsn, log_level="WARNING", mutual_tls=mutual_tls)
    mesh.start()
    try:
        return mesh.started_in, asyncio.run(internal_payments(mesh.config.targets(), seconds, in_flight, mesh.tls))
    finally:
        mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    postgres = PostgresServer()
    postgres.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            rules = generous_fraud_rules(Path(folder))
            rows = [
                ("embedded (SQLite), colocated", *embedded("", rules, True, args.seconds, args.in_flight)),
                ("embedded, colocated calls", *embedded(postgres.new_database(), rules, True, args.seconds, args.in_flight)),
                ("embedded, loopback calls", *embedded(postgres.new_database(), rules, False, args.seconds, args.in_flight)),
                ("distributed, plaintext", *distributed(postgres.new_database(), args.seconds, args.in_flight, False)),
                ("distributed, mutual TLS", *distributed(postgres.new_database(), args.seconds, args.in_flight)),
            ]
    finally:
        postgres.stop()
        postgres.remove()
    base = rows[-1][2].qps
    print(
        f"{'mode':<28} {'to SERVING s':>12} {'payments/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs distributed':>15}"
    )
    for name, ready, result in rows:
        print(
            f"{name:<28} {ready:>12.2f} {result.qps:>11.0f} {result.percentile(0.5):>8.2f} {result.percentile(0.99):>8.2f}"
            f" {result.errors:>7} {result.qps / base:>14.2f}x"
        )


if __name__ == "__main__":
    main()
