"""The generative concurrency suite's CI profile: a fixed set of seeds, each a history of
concurrent principals on a fresh bank (SQLite and PostgreSQL), every invariant checked at
quiescence. `python -m tests.simulation --minutes N --seed S` runs long with fresh seeds."""

from __future__ import annotations

import asyncio

import pytest

from common.config import Settings
from mesh.embedded import RunningBank
from tests.rpc_catalog import served_rpcs
from tests.simulation.model import WEIGHTS
from tests.simulation.runner import QUICK_WORKERS, bank_for, history_of, run_history

SEEDS = (1, 2, 3, 4, 5, 8)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_generated_history_keeps_every_invariant(settings: Settings, seed: int) -> None:
    history, quick = history_of(seed), settings.model_copy(update=QUICK_WORKERS)
    async with bank_for(quick) as driver:
        verdict = await run_history(driver, quick, seed, history)
    assert not verdict.broken, verdict.report(history)


async def test_every_state_changing_rpc_is_generated(bank: RunningBank) -> None:
    """Found by reflection: an RPC whose request carries a request_id changes state, and the
    generator sends it (or says here why not). A new RPC fails this test until it is covered."""
    rpcs = await asyncio.to_thread(served_rpcs, bank.target)
    changing = {r.name for r in rpcs if "request_id" in r.descriptor.fields_by_name} | {"PostCharges"}
    assert changing - set(WEIGHTS) == set()
