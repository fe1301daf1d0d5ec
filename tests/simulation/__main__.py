"""The long profile: fresh seeds for N minutes, each history on a fresh bank, a failing one shrunk
and printed as a reproducer.

    .venv/bin/python -m tests.simulation --minutes 30 --seed 1000 [--engine postgres] [--waves 80]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers import PostgresServer
from tests.simulation.runner import WAVES, Engine, engine, history_of, run_history, shrink


@contextmanager
def _engine(name: str) -> Iterator[Engine]:
    if name == "sqlite":
        yield engine()
        return
    server = PostgresServer()
    server.start()
    try:
        yield engine(server.new_database)
    finally:
        server.stop()
        server.remove()


async def _run(args: argparse.Namespace, fresh: Engine) -> int:
    until, seed, histories, calls, failed = time.monotonic() + args.minutes * 60, args.seed, 0, 0, 0
    started = time.monotonic()
    while time.monotonic() < until:
        history = history_of(seed, args.waves)
        async with fresh() as (driver, settings):
            verdict = await run_history(driver, settings, seed, history)
        histories, calls = histories + 1, calls + verdict.calls
        if verdict.broken:
            failed += 1
            small = await shrink(fresh, seed, history, set(verdict.broken)) if args.shrink else history
            print(verdict.report(small), flush=True)
        seed += 1
    elapsed = time.monotonic() - started
    print(
        f"{histories} histories (seeds {args.seed}..{seed - 1}), {calls} calls, {failed} failed,"
        f" {elapsed:.0f} s: {histories / elapsed:.2f} histories/s, {calls / elapsed:.0f} calls/s",
        flush=True,
    )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to generate histories (default 5)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="the first seed (default: now)")
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--waves", type=int, default=WAVES, help=f"waves per history (default {WAVES})")
    parser.add_argument("--no-shrink", dest="shrink", action="store_false", help="print failing histories whole")
    args = parser.parse_args()
    with _engine(args.engine) as fresh:
        return asyncio.run(_run(args, fresh))


if __name__ == "__main__":
    sys.exit(main())
