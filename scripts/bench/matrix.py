"""The benchmark matrix in one command: every figure beside the baseline it is judged against,
measured in the same run, printed as one table and written as JSON.

Rows: bare grpc.aio echo; cached GetCustomer; internal and external payments; colocated vs
distributed payments; daily interest vs the set-based SQL floor (SQLite, PostgreSQL); cache tiers
beside a raw Redis GET; DI beside dependency-injector; circuit breaker beside bare pybreaker.

The performance goals (issue 16) are printed after the rows, each with its ratio and PASS or
MISS. The load rows (gRPC, payments, modes) are measured `--rounds` times, alternating, and each
row shows the median; `--compare old.json` prints every row beside an earlier run's and judges
the goals that are stated against today's code.

Usage: .venv/bin/python scripts/bench/matrix.py [--seconds 3] [--rounds 3] [--interest-accounts 1000000]
                                                [--json var/bench/matrix.json] [--compare old.json]
A full run (1,000,000 accounts, one round) takes about 6 minutes on 2 cores; each further round
adds about 2.

The committed baseline, `scripts/bench/baselines/matrix.json` (2026-12-07, `--seconds 3 --rounds 3
--interest-accounts 100000`, on this 2-core machine), is what a change is compared with
(`--compare scripts/bench/baselines/matrix.json`), not only the commit before it, so that slow
drift shows. Refresh it, with the same arguments, only when a change is meant to move a figure.
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

from mesh.local_servers import PostgresServer, RedisServer  # noqa: E402
from scripts.bench import cache, di, get_customer, interest, modes, payments  # noqa: E402
from scripts.bench.harness import PYTHON, bank_process, server_process  # noqa: E402
from tests.bank_helpers import generous_fraud_rules  # noqa: E402


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
        echo1, echo64 = asyncio.run(get_customer._echo(target, seconds))
        echo16 = asyncio.run(payments.echo(target, seconds, 16))
    rows = [
        Row("grpc", "bare grpc.aio echo, 64 in flight", echo64.qps, "calls/s"),
        Row("grpc", "bare grpc.aio echo, 16 in flight", echo16.qps, "calls/s"),
    ]
    with tempfile.TemporaryDirectory() as data_dir, bank_process(data_dir) as target:
        cached1, cached = asyncio.run(get_customer._get_customer(target, seconds, 1000, "GetCustomer"))
    rows.append(
        Row("grpc", "GetCustomer (auth + cache), 64 in flight", cached.qps, "calls/s", "bare echo, 64 in flight", echo64.qps)
    )
    rows.append(Row("grpc", "GetCustomer p99, 64 in flight", cached.percentile(0.99), "ms"))
    rows.append(
        Row(
            "grpc",
            "GetCustomer p50, 1 in flight",
            cached1.percentile(0.5),
            "ms",
            "bare echo p50, 1 in flight",
            echo1.percentile(0.5),
        )
    )
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
            _, plaintext = modes.distributed(postgres.new_database(), seconds, 16, mutual_tls=False)
    finally:
        postgres.stop()
        postgres.remove()
    return [
        Row("modes", "distributed payments (8 processes, PostgreSQL, Redis)", distributed.qps, "payments/s"),
        Row("modes", "distributed payments, mutual TLS vs plaintext", distributed.qps, "payments/s", "plaintext", plaintext.qps),
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


def print_rows(rows: list[Row], earlier: dict[str, float]) -> None:
    compare = " before     change" if earlier else ""
    print(f"{'group':<11} {'measure':<56} {'value':>11} {'unit':<16} {'ratio':>8}  {'baseline':<40}{compare}")
    print("-" * (132 + len(compare)))
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        before = earlier.get(r.measure)
        change = f" {before:>9.2f} {r.value / before - 1:>+9.1%}" if before else ""
        print(f"{r.group:<11} {r.measure:<56} {r.value:>11.2f} {r.unit:<16} {ratio:>8}  {r.baseline:<40}{change}")


@dataclass(frozen=True)
class Goal:
    """A goal judged on one row: its ratio to its baseline (or, with `against_earlier`, its value
    to the same row of an earlier run), at least or at most a bound."""

    id: str
    what: str
    measure: str
    bound: float
    at_most: bool = False
    against_earlier: bool = False
    as_cost: bool = False  # judged as 1 - ratio (what it costs), at most the bound

    def ratio(self, rows: dict[str, Row], earlier: dict[str, float]) -> float | None:
        row = rows.get(self.measure)
        if row is None:
            return None
        if self.against_earlier:
            before = earlier.get(self.measure)
            return row.value / before if before else None
        if row.ratio is None:
            return None
        return 1 - row.ratio if self.as_cost else row.ratio

    def verdict(self, ratio: float | None) -> str:
        if ratio is None:
            return "n/a (needs --compare)" if self.against_earlier else "n/a"
        return "PASS" if (ratio <= self.bound if self.at_most else ratio >= self.bound) else "MISS"


GOALS = (
    Goal("P1", "cached GetCustomer with auth, 64 in flight, vs bare echo", "GetCustomer (auth + cache), 64 in flight", 0.85),
    Goal("P1b", "the same at 1 in flight, p50 latency vs echo", "GetCustomer p50, 1 in flight", 1.10, at_most=True),
    Goal("P3", "internal payment, embedded on SQLite, 16 in flight, vs echo", "internal payments, 16 in flight", 0.30),
    Goal(
        "P3b",
        "internal payment, distributed on PostgreSQL + Redis, vs the earlier run",
        "distributed payments (8 processes, PostgreSQL, Redis)",
        2.0,
        against_earlier=True,
    ),
    Goal("P2", "embedded colocated vs distributed, both on PostgreSQL", "embedded-colocated payments (PostgreSQL)", 2.5),
    Goal("P4", "daily interest vs the same-data floor, SQLite", "daily interest, sqlite", 1.5, at_most=True),
    Goal("P4", "daily interest vs the same-data floor, PostgreSQL", "daily interest, postgres", 1.5, at_most=True),
    Goal(
        "P9",
        "cost of mutual TLS on distributed payments",
        "distributed payments, mutual TLS vs plaintext",
        0.10,
        at_most=True,
        as_cost=True,
    ),
)


def by_measure(rows: list[Row]) -> dict[str, Row]:
    """Rows by measure; an interest row also by "daily interest, <engine>" (its count varies)."""
    found = {r.measure: r for r in rows}
    for r in rows:
        if r.measure.startswith("daily interest,"):
            found[f"daily interest, {r.measure.rsplit(' ', 1)[-1]}"] = r
    return found


def print_goals(rows: list[Row], earlier: dict[str, float]) -> list[dict[str, object]]:
    found, verdicts = by_measure(rows), []
    print(f"\n{'goal':<5} {'what':<72} {'ratio':>8} {'bound':>8}  verdict")
    print("-" * 108)
    for goal in GOALS:
        ratio = goal.ratio(found, earlier)
        bound = f"{'<=' if goal.at_most else '>='} {goal.bound:.2f}"
        verdict = goal.verdict(ratio)
        shown = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"{goal.id:<5} {goal.what:<72} {shown:>8} {bound:>8}  {verdict}")
        verdicts.append({"goal": goal.id, "what": goal.what, "ratio": ratio, "bound": bound, "verdict": verdict})
    return verdicts


def median_of(rounds: list[list[Row]]) -> list[Row]:
    """Each row's median value (and baseline) over the rounds, in the first round's order."""
    if len(rounds) == 1:
        return rounds[0]
    merged = []
    for first in rounds[0]:
        same = [r for rows in rounds for r in rows if r.measure == first.measure]
        merged.append(
            Row(
                first.group,
                first.measure,
                statistics.median(r.value for r in same),
                first.unit,
                first.baseline,
                statistics.median(r.baseline_value for r in same),
            )
        )
    return merged


def _earlier(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    return {row["measure"]: float(row["value"]) for row in json.loads(path.read_text())["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load row (default 3)")
    parser.add_argument("--interest-accounts", type=int, default=1_000_000)
    parser.add_argument("--cache-samples", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "matrix.json")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the load rows; each shows the median (default 1)")
    parser.add_argument("--compare", type=Path, default=None, help="an earlier run's JSON, shown beside this one")
    args = parser.parse_args()
    earlier = _earlier(args.compare)
    load_rounds: list[list[Row]] = []
    for _ in range(args.rounds):  # alternating: every load row once per round
        load_rounds.append(grpc_rows(args.seconds) + modes_rows(args.seconds))
        print(f"... round {len(load_rounds)} of the load rows done", file=sys.stderr, flush=True)
    rows = median_of(load_rounds)
    for section in (breaker_rows, lambda: interest_rows(args.interest_accounts), lambda: cache_rows(args.cache_samples), di_rows):
        rows += section()
        print(f"... {rows[-1].group} done", file=sys.stderr, flush=True)
    print_rows(rows, earlier)
    goals = print_goals(rows, earlier)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "measured_at": datetime.now(UTC).isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "arguments": {k: str(v) for k, v in vars(args).items()},
                "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
                "goals": goals,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
