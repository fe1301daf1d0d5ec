"""A bounded mixed-load soak of the distributed mesh (one process per context, Redis and a
throw-away PostgreSQL started and stopped here): every interval it prints the operations, errors,
latency percentiles and the resident memory of every process; at the end a summary, also as JSON.

Usage: .venv/bin/python scripts/soak.py [--seconds 600] [--interval 30] [--workers 6] [--json var/soak.json]
Everything runs on 127.0.0.1 and stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from mesh.distributed import Mesh  # noqa: E402
from mesh.local_servers import PostgresServer  # noqa: E402
from tests.integration.test_mesh_modes import CONTEXTS, mesh_client  # noqa: E402
from tests.local_mesh import loopback_mesh  # noqa: E402
from tests.mixed_load import Load, setup_accounts  # noqa: E402


@dataclass
class Interval:
    t: float
    operations: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    rss_mb: dict[str, float]


@dataclass
class Report:
    seconds: float
    operations: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def _soak(mesh: Mesh, seconds: float, interval: float, workers: int, echo: bool) -> Report:
    report = Report(seconds)
    async with mesh_client({c: mesh.config.target(c) for c in CONTEXTS}, mesh.tls) as ch:
        load = Load(ch, await setup_accounts(ch))
        tasks = [asyncio.create_task(load.worker()) for _ in range(workers)]
        began = time.monotonic()
        seen_errors: dict[str, int] = {}
        while (elapsed := time.monotonic() - began) < seconds:
            await asyncio.sleep(min(interval, seconds - elapsed))
            now = time.monotonic()
            recent = [ms for when, _, ms in load.latencies if when > now - interval]
            errors = {
                k: n - seen_errors.get(k, 0)
                for k, n in load.outcomes.items()
                if k.startswith("error") and n - seen_errors.get(k, 0)
            }
            seen_errors = {k: n for k, n in load.outcomes.items() if k.startswith("error")}
            memory = {f"{r.process}[{r.index}]": round(rss_mb(r.proc.pid), 1) for r in mesh.replicas}
            report.intervals.append(
                Interval(
                    round(now - began, 1),
                    len(recent),
                    errors,
                    round(_percentile(recent, 0.5), 2),
                    round(_percentile(recent, 0.99), 2),
                    memory,
                )
            )
            if echo:
                _print_interval(report.intervals[-1], first=len(report.intervals) == 1)
        load.stop.set()
        await asyncio.gather(*tasks)
    report.operations = len(load.latencies)
    report.errors = {k: n for k, n in load.outcomes.items() if k.startswith("error")}
    return report


def _print_interval(row: Interval, first: bool) -> None:
    if first:
        print(f"{'t s':>6} {'ops':>6} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}  RSS MB per process")
    memory = " ".join(f"{name}={mb:.0f}" for name, mb in row.rss_mb.items())
    print(
        f"{row.t:>6.0f} {row.operations:>6} {sum(row.errors.values()):>7} {row.p50_ms:>8.1f} {row.p99_ms:>8.1f}  {memory}",
        flush=True,
    )


def run_soak(seconds: float, interval: float, workers: int = 6, echo: bool = True) -> Report:
    postgres = PostgresServer()
    postgres.start()
    try:
        mesh = loopback_mesh("ogpgy-soak-", postgres=postgres.new_database(), log_level="WARNING")
        mesh.start()
        try:
            return asyncio.run(_soak(mesh, seconds, interval, workers, echo))
        finally:
            mesh.stop()
    finally:
        postgres.stop()
        postgres.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=30)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "soak.json")
    args = parser.parse_args()
    report = run_soak(args.seconds, args.interval, args.workers)
    first, last = report.intervals[0].rss_mb, report.intervals[-1].rss_mb
    print(f"\n{report.operations} operations in {args.seconds:.0f} s, errors: {report.errors or 'none'}")
    print("RSS MB first -> last: " + ", ".join(f"{p} {first[p]:.0f}->{last[p]:.0f}" for p in first))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(report), indent=2))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
