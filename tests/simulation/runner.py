"""A history run on a fresh bank, its invariants checked at quiescence; a failing one shrunk to
fewer operations that still fail, and printed with its seed as a reproducer."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from common.clock import Clock
from common.config import Settings
from common.di import ContextModuleBuilder
from mesh.embedded import start_embedded
from tests.conftest import ADMIN_PASSWORD
from tests.rpc_catalog import served_rpcs
from tests.simulation.driver import Driver, ShiftedClock
from tests.simulation.invariants import everything
from tests.simulation.model import History, generate, without

WAVES = 80  # per history in the CI profile


@dataclass(frozen=True)
class Verdict:
    seed: int
    broken: dict[str, list[str]]
    calls: int

    def report(self, history: History) -> str:
        lines = [f"seed {self.seed}: {len(self.broken)} invariant(s) broken"]
        for name, found in self.broken.items():
            lines += [f"  {name}:"] + [f"    {item}" for item in found[:8]]
        lines += ["  history (waves run at once, in order):"]
        lines += [f"    wave {i}: " + " | ".join(op.describe() for op in wave) for i, wave in enumerate(history)]
        return "\n".join(lines)


# Workers that look often and take a lost answer over quickly, so that a history settles.
QUICK_WORKERS = {
    "queue_poll_seconds": 0.05,
    "payment_stale_seconds": 0.5,
    "breaker_reset_seconds": 0.5,
    "network_timeout_seconds": 0.3,
}


def simulation_settings(folder: Path, **engine: object) -> Settings:
    fields: dict[str, object] = {"data_dir": folder, "port": 0, "admin_password": ADMIN_PASSWORD, **QUICK_WORKERS, **engine}
    return Settings.model_validate(fields)


@contextlib.asynccontextmanager
async def bank_for(settings: Settings) -> AsyncIterator[Driver]:
    clock = ShiftedClock()

    def movable(builder: ContextModuleBuilder) -> None:
        builder.override(Clock, clock)

    bank = await start_embedded(settings, customize=movable)
    rpcs = await asyncio.to_thread(served_rpcs, bank.target)  # a blocking client: not on the bank's loop
    driver = Driver(bank.target, {r.name: r for r in rpcs}, clock)
    try:
        yield driver
    finally:
        await driver.close()
        await bank.stop(grace=1)


async def run_history(driver: Driver, settings: Settings, seed: int, history: History) -> Verdict:
    await driver.prepare()
    await driver.run(history)
    broken = await everything(settings, driver, set(driver.made.war))
    return Verdict(seed, broken, sum(len(v) for v in driver.answers.by_key.values()))


async def shrink(
    fresh: Engine,
    seed: int,
    history: History,
    broken: set[str],
    budget: int = 12,
) -> History:
    """Fewer operations that still break one of the same invariants: halves dropped, then single
    operations, each tried on a fresh bank, within `budget` runs."""
    ops = [op.n for wave in history for op in wave]
    chunk = max(1, len(ops) // 2)
    while chunk >= 1 and budget > 0:
        dropped_any = False
        for start in range(0, len(ops), chunk):
            if budget <= 0:
                break
            trial = without(history, set(ops[start : start + chunk]))
            budget -= 1
            async with fresh() as (driver, settings):
                verdict = await run_history(driver, settings, seed, trial)
            if set(verdict.broken) & broken:
                history, ops, dropped_any = trial, [op.n for wave in trial for op in wave], True
                break
        if not dropped_any:
            chunk //= 2
    return history


Engine = Callable[[], contextlib.AbstractAsyncContextManager[tuple[Driver, Settings]]]


def engine(new_database: Callable[[], str] | None = None) -> Engine:
    """Fresh banks: on SQLite, or on PostgreSQL when `new_database` gives each a database."""

    @contextlib.asynccontextmanager
    async def fresh() -> AsyncIterator[tuple[Driver, Settings]]:
        with tempfile.TemporaryDirectory() as folder:
            database = {"database": "postgres", "postgres_dsn": new_database()} if new_database else {}
            settings = simulation_settings(Path(folder), **database)
            async with bank_for(settings) as driver:
                yield driver, settings

    return fresh


def history_of(seed: int, waves: int = WAVES) -> History:
    return generate(seed, waves)
