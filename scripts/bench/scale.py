"""GetCustomer throughput against the number of replicas of the customer context on this host:
a distributed loopback mesh (mutual TLS) with N customer processes, which callers balance with
gRPC's round_robin, for N = 1, 2, ...

One Python process serves on one core at most (the GIL); replicas are how a context uses more.
On this machine the load generator shares the same cores, so the curve flattens at the core
count; on a host with more cores it goes on until the database or Redis is the limit.

Usage: .venv/bin/python scripts/bench/scale.py [--replicas 1,2,3] [--seconds 4] [--customers 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "gen")]

from scripts.bench.get_customer import _get_customer  # noqa: E402
from scripts.bench.harness import Result  # noqa: E402
from tests.local_mesh import loopback_mesh  # noqa: E402


def measure(replicas: int, seconds: float, customers: int) -> list[Result]:
    mesh = loopback_mesh("ogpgy-bench-scale-", replicas={"customer": replicas}, log_level="WARNING")
    mesh.start()
    try:
        targets = mesh.config.targets()
        name = f"{replicas} customer replica{'s' if replicas > 1 else ''}"
        return asyncio.run(_get_customer(targets["customer"], seconds, customers, name, mesh.tls, targets["identity"]))
    finally:
        mesh.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated counts (default 1,2,3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per row (default 4)")
    parser.add_argument("--customers", type=int, default=200, help="customers onboarded before reading (default 200)")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    print(f"{os.cpu_count()} CPUs; GetCustomer through round_robin over the customer replicas, mutual TLS\n")
    print(f"{'replicas':>8} {'in flight':>9} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs 1 replica':>13}")
    first: dict[int, float] = {}
    for count in counts:
        for row in measure(count, args.seconds, args.customers):
            first.setdefault(row.in_flight, row.qps)
            speedup = row.qps / first[row.in_flight]
            print(
                f"{count:>8} {row.in_flight:>9} {row.qps:>8.0f} {row.percentile(0.5):>8.2f} {row.percentile(0.99):>8.2f} {speedup:>12.2f}x"
            )


if __name__ == "__main__":
    main()
