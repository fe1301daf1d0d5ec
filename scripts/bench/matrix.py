"""The benchmark matrix in one command: every figure beside the baseline it is judged against,
measured in the same run, printed as one table and written as JSON.

Rows: bare grpc.aio echo; cached GetCustomer; internal and external payments; colocated vs
distributed payments; daily interest vs the set-based SQL floor (SQLite, PostgreSQL); cache tiers
beside a raw Redis GET; DI beside dependency-injector; circuit breaker beside bare pybreaker.

Usage: .venv/bin/python scripts/bench/matrix.py [--seconds 3] [--interest-accounts 1000000]
                                                [--json var/bench/matrix.json]
A full run (1,000,000 accounts) takes about 6 minutes on 2 cores; --interest-accounts 100000 about 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from scripts.bench import cache, di, get_customer, interest, modes, payments  # noqa: E402
from scripts.bench.harness import PYTHON, bank_process, server_process  # noqa: E402
from tests.bank_helpers import generous_fraud_rules  # noqa: E402
from tests.servers import PostgresServer, RedisServer  # noqa: E402


@dataclass
class Row:
    group: str
    measure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float = 0.0

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline_value if self.baseline_value else None


def _echo_server() -> AbstractContextManager[str]:
    return server_process([PYTHON, str(ROOT / "scripts/bench/echo_server.py")], r"on (127\.0\.0\.1:\d+)")


def grpc_rows(seconds: float) -> list[Row]:
    with _echo_server() as target:
        echo64 = asyncio.run(get_customer._echo(target, seconds))[-1]
        echo16 = asyncio.run(payments.echo(target, seconds, 16))
    rows = [
        Row("grpc", "bare grpc.aio echo, 64 in flight", echo64.qps, "calls/s"),
        Row("grpc", "bare grpc.aio echo, 16 in flight", echo16.qps, "calls/s"),
    ]
    with tempfile.TemporaryDirectory() as data_dir, bank_process(data_dir) as target:
        cached = asyncio.run(get_customer._get_customer(target, seconds, 1000, "GetCustomer"))[-1]
    rows.append(
        Row("grpc", "GetCustomer (auth + cache), 64 in flight", cached.qps, "calls/s", "bare echo, 64 in flight", echo64.qps)
    )
    rows.append(Row("grpc", "GetCustomer p99, 64 in flight", cached.percentile(0.99), "ms"))
    with (
        tempfile.TemporaryDirectory() as data_dir,
        bank_process(data_dir, "--fraud-rules", str(generous_fraud_rules(Path(data_dir)))) as target,
    ):
        internal, external = asyncio.run(payments.payments(target, seconds, 16))
    for result in (internal, external):
        rows.append(
            Row(
                "payments",
                f"{result.name.split(' ')[0]} payments, 16 in flight",
                result.qps,
                "payments/s",
                "bare echo, 16 in flight",
                echo16.qps,
            )
        )
        rows.append(Row("payments", f"{result.name.split(' ')[0]} payment p99", result.percentile(0.99), "ms"))
    return rows


def breaker_rows() -> list[Row]:
    micros = asyncio.run(payments.breaker_overhead())
    bare = micros["bare await"]
    pybreaker_us = micros["bare pybreaker (calling)"] - bare
    return [
        Row(
            "resilience",
            "our breaker, overhead per call",
            micros["our breaker"] - bare,
            "µs",
            "bare pybreaker overhead",
            pybreaker_us,
        )
    ]


def modes_rows(seconds: float) -> list[Row]:
    postgres = PostgresServer()
    postgres.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            rules = generous_fraud_rules(Path(folder))
            ready_c, colocated = modes.embedded("", rules, True, seconds, 16)
            ready_pg, colocated_pg = modes.embedded(postgres.new_database(), rules, True, seconds, 16)
            ready_d, distributed = modes.distributed(postgres.new_database(), seconds, 16)
    finally:
        postgres.stop()
        postgres.remove()
    return [
        Row("modes", "distributed payments (8 processes, PostgreSQL, Redis)", distributed.qps, "payments/s"),
        Row("modes", "embedded-colocated payments (SQLite)", colocated.qps, "payments/s", "distributed", distributed.qps),
        Row("modes", "embedded-colocated payments (PostgreSQL)", colocated_pg.qps, "payments/s", "distributed", distributed.qps),
        Row("modes", "embedded-colocated p50 / p99", colocated.percentile(0.5), f"ms (p99 {colocated.percentile(0.99):.1f})"),
        Row("modes", "distributed p50 / p99", distributed.percentile(0.5), f"ms (p99 {distributed.percentile(0.99):.1f})"),
        Row("modes", "embedded: start to SERVING", ready_c, "s"),
        Row("modes", "embedded (PostgreSQL): start to SERVING", ready_pg, "s"),
        Row("modes", "distributed: start to all SERVING", ready_d, "s"),
    ]


def interest_rows(accounts: int) -> list[Row]:
    values = interest.balances(accounts)
    rows = []
    for engine in ("sqlite", "postgres"):
        m = interest.measure(engine, values, 5000)
        rows.append(
            Row(
                "interest",
                f"daily interest, {m.processed:,} accounts, {engine}",
                m.api,
                "s",
                f"set-based floor on the same data ({m.floor:.2f} s)",
                m.floor,
            )
        )
        rows.append(Row("interest", f"  (floor on bare tables, {engine})", m.bare_floor, "s"))
    return rows


def cache_rows(samples: int) -> list[Row]:
    redis = RedisServer()
    redis.start()
    try:
        l1 = asyncio.run(cache.l1_hit_ns(samples))
        l2, raw = asyncio.run(cache.l2_and_raw(redis.url, samples))
        invalidation = asyncio.run(cache.invalidation_ms(redis.url, min(samples, 1000)))
    finally:
        redis.stop()
    return [
        Row("cache", "L1 hit (mean)", l1 / 1000, "µs", "raw Redis GET p50", cache.pct(raw, 0.5)),
        Row("cache", "L2 hit p50", cache.pct(l2, 0.5), "µs", "raw Redis GET p50", cache.pct(raw, 0.5)),
        Row("cache", "invalidation across instances p99", cache.pct(invalidation, 0.99), "ms"),
        Row("cache", "invalidation mean", statistics.mean(invalidation), "ms"),
    ]


def di_rows() -> list[Row]:
    m = di.measure(60, 200_000)
    return [
        Row("di", "build + init 60 components", m["ours_build_ms"], "ms", "dependency-injector", m["theirs_build_ms"]),
        Row("di", "resolve a singleton", m["ours_resolve_ns"], "ns", "dependency-injector", m["theirs_resolve_ns"]),
    ]


def print_rows(rows: list[Row]) -> None:
    print(f"{'group':<11} {'measure':<56} {'value':>11} {'unit':<16} {'ratio':>8}  baseline")
    print("-" * 132)
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        print(f"{r.group:<11} {r.measure:<56} {r.value:>11.2f} {r.unit:<16} {ratio:>8}  {r.baseline}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load row (default 3)")
    parser.add_argument("--interest-accounts", type=int, default=1_000_000)
    parser.add_argument("--cache-samples", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "matrix.json")
    args = parser.parse_args()
    rows: list[Row] = []
    for section in (
        lambda: grpc_rows(args.seconds),
        breaker_rows,
        lambda: modes_rows(args.seconds),
        lambda: interest_rows(args.interest_accounts),
        lambda: cache_rows(args.cache_samples),
        di_rows,
    ):
        rows += section()
        print(f"... {rows[-1].group} done", file=sys.stderr, flush=True)
    print_rows(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "arguments": {k: str(v) for k, v in vars(args).items()},
                "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
