"""Breaker overhead per call beside a bare await and bare pybreaker (same run), and internal and
external payments per second through gRPC beside a bare grpc.aio echo.

Usage: .venv/bin/python scripts/bench/payments.py [--seconds 5] [--in-flight 64]
The bank runs as `ogpgy up` (VelocityPay simulator served beside it, no faults).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import pybreaker  # noqa: E402
from grpc import aio  # noqa: E402

from common.resilience.breaker import CircuitBreaker  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2 as ppb  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc  # noqa: E402
from scripts.bench.harness import PYTHON, Result, bank_process, closed_loop, print_table, server_process  # noqa: E402
from tests.bank_helpers import Bank, admin_channel, eur, generous_fraud_rules  # noqa: E402

CALLS = 200_000


async def _dependency() -> int:
    return 1


async def breaker_overhead() -> dict[str, float]:
    """µs per call of: a bare await, pybreaker's calling() around it, our breaker."""
    bare_cb = pybreaker.CircuitBreaker()
    ours = CircuitBreaker("bench")

    async def bare() -> None:
        for _ in range(CALLS):
            await _dependency()

    async def with_pybreaker() -> None:
        for _ in range(CALLS):
            with bare_cb.calling():
                await _dependency()

    async def with_ours() -> None:
        for _ in range(CALLS):
            await ours.call(_dependency)

    timings = {}
    for name, run in (("bare await", bare), ("bare pybreaker (calling)", with_pybreaker), ("our breaker", with_ours)):
        started = time.perf_counter()
        await run()
        timings[name] = (time.perf_counter() - started) / CALLS * 1e6
    return timings


async def echo(target: str, seconds: float, in_flight: int) -> Result:
    async with aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/bench.Echo/Echo")
        return await closed_loop("bare grpc.aio echo", lambda i: call(b"x" * 200), in_flight, seconds)


async def funded_accounts(channel: aio.Channel, tag: str, count: int = 32) -> list[str]:
    """`count` verified customers' default accounts, each with a million euros to pay from."""
    client, accounts = Bank(channel), []
    for i in range(count):
        accounts.append((await client.default_account(await client.verified_customer(f"{tag}-{i}"))).account_id)
        await client.deposit(accounts[-1], "1000000.00", f"{tag}-{i}")
    return accounts


async def payments(target: str, seconds: float, in_flight: int) -> list[Result]:
    async with admin_channel(target) as channel:
        stub = pgrpc.PaymentServiceStub(channel)
        accounts = await funded_accounts(channel, "bp")
        rng = random.Random(3)
        rows = []
        for kind in ("internal", "external"):

            async def one(i: int, kind: str = kind) -> object:
                debtor = rng.choice(accounts)
                if kind == "internal":
                    beneficiary = {
                        "internal": ppb.InternalBeneficiary(account_id=rng.choice([a for a in accounts if a != debtor]))
                    }
                else:
                    beneficiary = {"external": ppb.ExternalBeneficiary(iban="DE89370400440532013000", name="Max")}
                request = ppb.CreatePaymentRequest(
                    request_id=f"{kind}-{i}", debtor_account_id=debtor, amount=eur("1.00"), **beneficiary
                )
                return await stub.CreatePayment(request)

            rows.append(await closed_loop(f"{kind} payment via gRPC", one, in_flight, seconds, warmup=0.5))
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    timings = asyncio.run(breaker_overhead())
    print(f"{'breaker, per call':<32} {'µs':>8} {'overhead µs':>12}")
    for name, micros in timings.items():
        print(f"{name:<32} {micros:>8.2f} {micros - timings['bare await']:>12.2f}")
    print()
    with server_process([PYTHON, str(ROOT / "scripts/bench/echo_server.py")], r"on (127\.0\.0\.1:\d+)") as target:
        rows = [asyncio.run(echo(target, args.seconds, args.in_flight))]
    with (
        tempfile.TemporaryDirectory() as data_dir,
        bank_process(data_dir, "--fraud-rules", str(generous_fraud_rules(Path(data_dir)))) as target,
    ):
        rows += asyncio.run(payments(target, args.seconds, args.in_flight))
    print_table(rows, {args.in_flight: rows[0]})


if __name__ == "__main__":
    main()
