"""The long profile: fresh seeds for N minutes, each history on a fresh bank, a failing one shrunk
and printed as a reproducer.

    .venv/bin/python -m tests.simulation --minutes 30 --seed 1000 [--engine postgres|mesh] [--waves 80]

`--engine mesh`: each history on a fresh distributed mesh whose processes are killed (kill -9) and
started again while it runs (tests/simulation/distributed.py); a failing history is printed with
its kills.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mesh.embedded import CONTEXT_NAMES
from tests.servers import PostgresServer
from tests.simulation.distributed import ChaoticDriver, kill_plan, mesh_engine, real_time
from tests.simulation.model import History
from tests.simulation.runner import WAVES, Engine, engine, history_of, run_history, shrink


@contextmanager
def _engine(name: str) -> Iterator[Engine]:
    if name == "sqlite":
        yield engine()
        return
    server = PostgresServer()
    server.start()
    try:
        yield mesh_engine(server.new_database) if name == "mesh" else engine(server.new_database)
    finally:
        server.stop()
        server.remove()


def _kills(seed: int, struck: str, small: History) -> str:
    shrunk = "\n".join(f"    {kill}" for kill in kill_plan(small, sorted(CONTEXT_NAMES)))
    return f"\n  kills in the first run of seed {seed}:\n{struck}\n  kills planned in the history printed:\n{shrunk}"


async def _run(args: argparse.Namespace, fresh: Engine) -> int:
    until, seed, histories, calls, failed = time.monotonic() + args.minutes * 60, args.seed, 0, 0, 0
    started, kills = time.monotonic(), 0
    while time.monotonic() < until:
        history = history_of(seed, args.waves)
        history = real_time(history) if args.engine == "mesh" else history
        async with fresh() as (driver, settings):
            verdict = await run_history(driver, settings, seed, history)
        struck = driver.schedule() if isinstance(driver, ChaoticDriver) else ""
        histories, calls, kills = histories + 1, calls + verdict.calls, kills + struck.count("kill -9")
        if verdict.broken:
            failed += 1
            if struck:  # a history on a mesh may not fail again the same way: what it broke, before shrinking
                print(verdict.report(history).split("  history (")[0] + f"  kills:\n{struck}", flush=True)
            small = await shrink(fresh, seed, history, set(verdict.broken)) if args.shrink else history
            print(verdict.report(small) + (_kills(seed, struck, small) if struck else ""), flush=True)
        elif struck:
            waits = "".join(f"\n{line}" for line in struck.splitlines() if "kill -9" not in line)
            print(f"seed {seed}: ok, {verdict.calls} calls, {struck.count('kill -9')} kills{waits}", flush=True)
        seed += 1
    elapsed = time.monotonic() - started
    print(
        f"{histories} histories (seeds {args.seed}..{seed - 1}), {calls} calls, {kills} kills, {failed} failed,"
        f" {elapsed:.0f} s: {histories / elapsed:.3f} histories/s ({histories * 60 / elapsed:.1f}/min),"
        f" {calls / elapsed:.0f} calls/s",
        flush=True,
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to generate histories (default 5)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="the first seed (default: now)")
    parser.add_argument("--engine", choices=("sqlite", "postgres", "mesh"), default="sqlite")
    parser.add_argument("--waves", type=int, default=WAVES, help=f"waves per history (default {WAVES})")
    parser.add_argument("--no-shrink", dest="shrink", action="store_false", help="print failing histories whole")
    args = parser.parse_args()
    with _engine(args.engine) as fresh:
        return asyncio.run(_run(args, fresh))


if __name__ == "__main__":
    sys.exit(main())
