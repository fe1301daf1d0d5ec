"""Shared pieces of the benchmark scripts: servers in subprocesses, a closed-loop load, a table.

Servers run in their own processes so the load generator does not steal their event loop; every
figure is printed beside a bare grpc.aio echo server measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@dataclass
class Result:
    name: str
    in_flight: int
    calls: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def qps(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def closed_loop(
    name: str, call: Callable[[int], Awaitable[object]], in_flight: int, seconds: float, warmup: float = 1.0
) -> Result:
    """`in_flight` workers each issue calls back to back for `seconds` (after a warm-up)."""
    latencies: list[float] = []
    errors = 0
    recording = False
    stop_at = time.perf_counter() + warmup + seconds

    async def worker(worker_id: int) -> int:
        nonlocal errors
        done, i = 0, 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call(worker_id * 1_000_000 + i)
            except Exception:  # noqa: BLE001 - counted, reported in the table
                errors += 1
            i += 1
            if recording:
                latencies.append((time.perf_counter() - started) * 1000)
                done += 1
        return done

    async def start_recording() -> None:
        nonlocal recording
        await asyncio.sleep(warmup)
        recording = True

    recorder = asyncio.ensure_future(start_recording())
    counts = await asyncio.gather(*(worker(w) for w in range(in_flight)))
    await recorder
    return Result(name, in_flight, sum(counts), seconds, latencies, errors)


def median_rows(rounds: list[list[Result]]) -> list[Result]:
    """Row by row, the round with the median QPS (rounds list the same rows in the same order)."""
    return [sorted(column, key=lambda r: r.qps)[len(column) // 2] for column in zip(*rounds, strict=True)]


def print_table(results: list[Result], baseline: dict[int, Result], label: str = "vs echo") -> None:
    header = f"{'target':<32} {'in flight':>9} {'QPS':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {label:>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = f"{r.qps / baseline[r.in_flight].qps:.0%}" if r.in_flight in baseline else "-"
        print(
            f"{r.name:<32} {r.in_flight:>9} {r.qps:>9.0f} {r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} {r.errors:>7} {ratio:>9}"
        )


BANK_READY = r"serving .* on (127\.0\.0\.1:\d+)"


def bank_command(data_dir: str, *extra: str) -> list[str]:
    """`ogpgy up` on a free port of its own, quiet (run it with bank_env(): the tests' admin password)."""
    return [
        PYTHON,
        "-m",
        "mesh.cli",
        "--log-level",
        "WARNING",
        "up",
        "--port",
        "0",
        "--data-dir",
        data_dir,
        *extra,
    ]


def bank_env() -> dict[str, str]:
    """The first admin's password the tests use, as the bank takes it (never on the command line)."""
    from tests.conftest import ADMIN_PASSWORD

    return {"OGPGY_ADMIN_PASSWORD": ADMIN_PASSWORD}


def bank_process(data_dir: str, *extra: str) -> AbstractContextManager[str]:
    """The bank (`ogpgy up`) in a process of its own; yields its target."""
    return server_process(bank_command(data_dir, *extra), BANK_READY, bank_env())


@contextmanager
def server_process(args: list[str], ready_pattern: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Starts a server subprocess; yields the target it printed; stops it by its PID."""
    with running_server(args, ready_pattern, env) as (target, _):
        yield target


@contextmanager
def running_server(
    args: list[str], ready_pattern: str = BANK_READY, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """Starts a server subprocess; yields the target it printed and its PID (for a profiler)."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(ready_pattern, line)
            if found:
                target = found.group(1)
                break
        else:
            raise RuntimeError(f"{args} exited with {proc.wait()} before it was ready")
        yield target, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
