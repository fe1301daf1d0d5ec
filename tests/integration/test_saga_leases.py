"""Replicas never drive one saga together: a lease on the saga's log row, renewed by every write,
refused to a writer that lost it (fencing), taken over once it runs out. Real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.config import Settings
from common.db.base import Tx
from common.db.databases import ContextDatabase, Databases
from common.di import ContextInfo
from common.saga import log as sagalog
from common.saga.runner import SagaContext, SagaDefinition, SagaRunner, Step
from tests.servers import PostgresServer

SAGA_TEST = ContextInfo("sagatest", "tests")  # the package has no migrations: only the framework's tables


class Probe:
    def __init__(self) -> None:
        self.acted = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def act(self, ctx: SagaContext) -> dict[str, str]:
        self.acted += 1
        self.started.set()
        await self.release.wait()
        return {"ok": "1"}


async def _replica(dsn: str, name: str, probe: Probe) -> tuple[SagaRunner, ContextDatabase]:
    settings = Settings(database="postgres", postgres_dsn=dsn, instance_name=name)
    db = ContextDatabase(Databases(settings), SAGA_TEST)
    await db.initialize()
    runner = SagaRunner(db, settings)
    runner.register(SagaDefinition("probe", (Step("only", probe.act),)))
    return runner, db


@pytest.fixture
async def replicas(postgres: PostgresServer) -> AsyncIterator[tuple[Probe, SagaRunner, SagaRunner, ContextDatabase]]:
    dsn = postgres.new_database()
    probe = Probe()
    (a, db_a), (b, db_b) = await _replica(dsn, "lending[0]", probe), await _replica(dsn, "lending[1]", probe)
    yield probe, a, b, db_a
    for db in (db_a, db_b):
        await db.shutdown()


async def test_a_second_replica_waits_for_the_driver_instead_of_acting(
    replicas: tuple[Probe, SagaRunner, SagaRunner, ContextDatabase],
) -> None:
    probe, a, b, _ = replicas
    driving = asyncio.create_task(a.begin("probe", "sag-1", {}))
    await probe.started.wait()
    waiting = asyncio.create_task(b.run("sag-1"))  # e.g. DisburseLoan retried on the other replica
    await asyncio.sleep(0.5)
    assert probe.acted == 1 and not waiting.done(), "the other replica did not act; it waits"
    probe.release.set()
    assert (await driving).status == sagalog.COMPLETED
    assert (await waiting).status == sagalog.COMPLETED and probe.acted == 1


async def test_a_driver_that_lost_its_lease_is_fenced_off_and_the_new_owner_finishes(
    replicas: tuple[Probe, SagaRunner, SagaRunner, ContextDatabase],
) -> None:
    probe, a, b, db = replicas
    driving = asyncio.create_task(a.begin("probe", "sag-2", {}))
    await probe.started.wait()

    async def expire(tx: Tx) -> None:
        await tx.execute("UPDATE saga_runs SET lease_until = 0 WHERE saga_id = 'sag-2'")

    await db.write(expire)  # as if lending[0] had stalled past its lease
    taking_over = asyncio.create_task(b.run("sag-2"))
    await asyncio.sleep(0.3)
    probe.release.set()  # both actions return now; only the lease holder's result is written
    assert (await taking_over).status == sagalog.COMPLETED
    assert (await driving).status == sagalog.COMPLETED, "the fenced driver waited for the new owner's result"
    assert probe.acted == 2, "the step ran twice (it must be idempotent by its key), the log recorded it once"
