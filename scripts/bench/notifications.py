"""Notification latency: from an event's cause (OnboardCustomer answered) to the welcome message's
arrival at the SMTP server, p50 and p99, at a steady rate of onboardings.

The bank runs as `ogpgy up` (SQLite, embedded) in a process of its own, sending to a mail simulator
served by this script, so that both ends are timed on this process's clock. What the figure
covers: the outbox relay, the event bus, the notification context's handler (render, store), its
courier (the customer's address over gRPC, one SMTP session) and the simulator's answer.

Usage: .venv/bin/python scripts/bench/notifications.py [--customers 300] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from mesh.mail_simulator import MailSimulator  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2 as pb  # noqa: E402
from ogpgy.customer.v1 import customer_service_pb2_grpc as pb_grpc  # noqa: E402
from scripts.bench.get_customer import bench_onboarding  # noqa: E402
from scripts.bench.harness import bank_process  # noqa: E402
from tests.bank_helpers import admin_channel  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def _onboard_at_rate(target: str, customers: int, rate: float) -> dict[str, float]:
    """customer id -> when its onboarding was answered (the wall clock the simulator stamps with too)."""
    answered: dict[str, float] = {}
    async with admin_channel(target) as channel:
        stub = pb_grpc.CustomerServiceStub(channel)

        async def one(i: int) -> None:
            response: pb.OnboardCustomerResponse = await stub.OnboardCustomer(bench_onboarding(i))
            answered[response.customer.customer_id] = time.time()

        started = time.monotonic()
        tasks = []
        for i in range(customers):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return answered


def _customer_of(body: str) -> str:
    return body.split("customer number is ")[1].split(".")[0]  # the welcome template's sentence


async def _measure(customers: int, rate: float) -> None:
    mail = MailSimulator()
    await mail.start()
    try:
        with tempfile.TemporaryDirectory() as data_dir, bank_process(data_dir, "--smtp", mail.url) as target:
            answered = await _onboard_at_rate(target, customers, rate)
            if not await mail.wait_for(customers, 60):
                print(f"only {len(mail.mailbox())} of {customers} welcomes arrived within 60 s", file=sys.stderr)
    finally:
        await mail.stop()
    arrived = {_customer_of(m.body): m.at.timestamp() for m in mail.mailbox().values()}
    latencies = [(arrived[c] - t) * 1000 for c, t in answered.items() if c in arrived]
    print(f"{'customers':>10} {'rate/s':>8} {'arrived':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    print(
        f"{customers:>10} {rate:>8.0f} {len(latencies):>8} {pct(latencies, 0.5):>8.1f} {pct(latencies, 0.99):>8.1f}"
        f" {max(latencies):>8.1f} {statistics.fmean(latencies):>8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="onboardings started per second (default 50)")
    args = parser.parse_args()
    asyncio.run(_measure(args.customers, args.rate))


if __name__ == "__main__":
    main()
