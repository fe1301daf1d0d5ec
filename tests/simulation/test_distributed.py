"""The simulation's mesh engine end to end, in CI's time: one short history on a fresh distributed
mesh, the account process killed with SIGKILL in its third wave and started again; every invariant
holds at quiescence, read from the mesh's own database (a tampered balance there breaks one).
The long profile runs many histories with kills drawn from each: `python -m tests.simulation
--engine mesh`."""

from __future__ import annotations

import signal

import pytest

from mesh.distributed import check_serving
from tests.servers import PostgresServer
from tests.simulation.distributed import ChaoticDriver, Kill, mesh_engine, real_time
from tests.simulation.invariants import everything, query
from tests.simulation.runner import history_of, run_history

pytestmark = pytest.mark.slow
SEED, WAVES = 3, 10


async def test_a_history_survives_a_kill_9_of_a_process_and_keeps_every_invariant(postgres: PostgresServer) -> None:
    history = real_time(history_of(SEED, WAVES))
    async with mesh_engine(postgres.new_database)() as (driver, settings):
        assert isinstance(driver, ChaoticDriver)
        mesh = driver.chaos.mesh
        driver.chaos.plan = [Kill(2, 5.0, "account")]
        killed = mesh.replica("account").proc.pid
        verdict = await run_history(driver, settings, SEED, history)
        assert not verdict.broken, verdict.report(history) + "\n" + driver.schedule()

        [struck] = driver.chaos.struck
        assert (struck.pid, struck.exit_code) == (killed, -signal.SIGKILL)
        assert struck.new_pid == mesh.replica("account").proc.pid != killed
        assert check_serving(mesh.config.target("account"), tls=mesh.tls), "the account process came back"

        [(transfers,)] = await query(settings, "account", "SELECT COUNT(*) FROM {account}transfers")
        assert transfers >= 4, "the invariants read the mesh's database: the history's deposits are there"
        await query(
            settings,
            "account",
            "UPDATE {account}accounts SET balance_minor = balance_minor + 1 WHERE account_id = 'acc_CASH_EUR' RETURNING 1",
        )
        assert "books balanced, balances equal entries" in await everything(settings, driver, set(driver.made.war))
