"""The simulation against the distributed mesh, with kill -9: each history on a fresh mesh (one OS
process per context on loopback, mutual TLS, its own Redis, a fresh database of one PostgreSQL
server), while a chaos task kills a process with SIGKILL, by the PID the mesh started it under, at
moments drawn from the history, and starts it again on the same address and configuration.

Calls in flight when a process dies fail (UNAVAILABLE, DEADLINE_EXCEEDED: answers that say
nothing about the request); the operations of later waves wait until the mesh is whole again,
and the driver's retries (a deadline or a cancel followed by the same request) go on as they
come. The invariants are checked at quiescence as on an embedded bank, reading the mesh's
database: one database, a schema per context, which is what `invariants._query` reads on
PostgreSQL.

The mesh's processes keep the real clock (a clock moved by dependency injection exists only in
one process), so a history runs here without its "days pass" operations (`real_time`), and the
driver's own clock is the real one: business dates are today's and the days before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import psycopg
from grpc import aio

from common.config import Settings
from mesh.distributed import Mesh
from tests.local_mesh import loopback_mesh
from tests.rpc_catalog import Rpc, served_rpcs
from tests.simulation.driver import Driver, ShiftedClock
from tests.simulation.front import Front
from tests.simulation.model import TIME_PASSES, History, Op, without
from tests.simulation.runner import QUICK_WORKERS, Engine, simulation_settings

EVERY = (6, 16)  # waves between two kills
WITHIN_MS = 40.0  # how far into its wave a kill strikes, at most
RECONCILE_WITHIN = 30.0  # seconds the reconciliation may stay UNAVAILABLE after the last restart


def real_time(history: History) -> History:
    """The history without its "days pass" operations: a mesh's processes keep the real clock."""
    return without(history, {op.n for wave in history for op in wave if op.kind == TIME_PASSES})


@dataclass(frozen=True)
class Kill:
    wave: int
    after_ms: float  # into the wave
    process: str

    def __str__(self) -> str:
        return f"wave {self.wave} +{self.after_ms:.1f} ms: kill -9 {self.process}"


def kill_plan(history: History, processes: list[str]) -> list[Kill]:
    """Kills every few waves, drawn from the history itself: the same history (the same seed)
    is struck at the same waves, in the same processes."""
    rng = random.Random("\n".join(op.describe() for wave in history for op in wave))
    plan, wave = [], rng.randint(1, EVERY[1])
    while wave < len(history):
        plan.append(Kill(wave, rng.uniform(0.0, WITHIN_MS), rng.choice(processes)))
        wave += rng.randint(*EVERY)
    return plan


@dataclass(frozen=True)
class Struck:
    """A kill as it happened: the PID killed, how it exited, the PID started in its place."""

    kill: Kill
    pid: int
    exit_code: int | None
    new_pid: int
    back_in: float  # seconds until the new process answered SERVING

    def __str__(self) -> str:
        return f"{self.kill} (pid {self.pid} exited {self.exit_code}; pid {self.new_pid} SERVING after {self.back_in:.1f} s)"


@dataclass
class Chaos:
    mesh: Mesh
    whole: asyncio.Event = field(default_factory=asyncio.Event)  # set while every process runs
    plan: list[Kill] = field(default_factory=list)
    struck: list[Struck] = field(default_factory=list)
    wave: int = -1  # the latest the driver has reached
    done: bool = False  # the history has run
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    failed_starts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.whole.set()

    def reached(self, wave: int) -> None:
        """The driver sends an operation of `wave`."""
        self.wave = max(self.wave, wave)
        self.moved.set()

    def finished(self) -> None:
        self.done = True
        self.moved.set()

    async def play(self) -> None:
        """Each kill of the plan, once the driver has reached its wave."""
        for kill in self.plan:
            while self.wave < kill.wave and not self.done:
                self.moved.clear()
                await self.moved.wait()
            if self.wave < kill.wave:
                return
            await asyncio.sleep(kill.after_ms / 1000)
            await self.strike(kill)

    async def strike(self, kill: Kill) -> None:
        self.whole.clear()
        try:
            replica = self.mesh.replica(kill.process)
            began = time.monotonic()
            os.kill(replica.proc.pid, signal.SIGKILL)
            code = await asyncio.to_thread(replica.proc.wait, 30)
            await self._restart(kill.process)
            new = self.mesh.replica(kill.process).proc.pid
            self.struck.append(Struck(kill, replica.proc.pid, code, new, time.monotonic() - began))
        finally:
            self.whole.set()

    async def _restart(self, process: str, attempts: int = 3) -> None:
        """The process again, on the same address and configuration; a start that fails (the
        machine's, not the kill's doing: a package reinstalled under it) is noted and tried again."""
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.to_thread(self.mesh.restart, process)
                return
            except (RuntimeError, TimeoutError) as error:
                self.failed_starts.append(f"start {attempt} of {process} failed: {str(error)[-300:]!r}")
                if attempt == attempts:
                    raise


class ChaoticDriver(Driver):
    """The driver, with a chaos task killing processes while its history runs."""

    makes_dead_letters = False  # the mesh's consumers run in processes of their own

    def __init__(self, target: str, rpcs: dict[str, Rpc], clock: ShiftedClock, chaos: Chaos) -> None:
        super().__init__(target, rpcs, clock)
        self.chaos = chaos
        self.waits: list[str] = []

    async def run(self, history: History) -> None:
        self.chaos.plan = self.chaos.plan or kill_plan(history, sorted({r.process for r in self.chaos.mesh.replicas}))
        chaos = asyncio.create_task(self.chaos.play())
        try:
            await super().run(history)
        finally:
            self.chaos.finished()
            await chaos

    async def _run_op(self, op: Op) -> None:
        if op.kind == TIME_PASSES:
            raise ValueError("a mesh keeps the real clock: run real_time(history)")
        self.chaos.reached(self.wave)
        await self.chaos.whole.wait()  # a later wave starts on a whole mesh; calls in flight fail
        await super()._run_op(op)

    async def reconcile(self) -> str:
        """As on one bank; but a process started again a moment ago may find its callees' channels
        still waiting to reconnect: UNAVAILABLE is asked again for up to RECONCILE_WITHIN seconds
        (the wait noted in the schedule), and any other failure is what the check reports."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            try:
                outcome = await super().reconcile()
            except aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or loop.time() - began > RECONCILE_WITHIN:
                    return f"ReconcileNetwork answered {error.code().name}: {error.details()}"
                await asyncio.sleep(0.5)
                continue
            if loop.time() - began > 1.0:
                self.waits.append(f"ReconcileNetwork UNAVAILABLE for {loop.time() - began:.1f} s after the history")
            return outcome

    def schedule(self) -> str:
        return "\n".join(f"    {s}" for s in [*self.chaos.struck, *self.chaos.failed_starts, *self.waits]) or "    (no kill)"


def real_clock() -> ShiftedClock:
    clock = ShiftedClock()
    clock.shift(datetime.now(UTC) - clock.now())
    return clock


def _worker_env() -> dict[str, str]:
    return {f"OGPGY_{name.upper()}": str(value) for name, value in QUICK_WORKERS.items()}


def _rpcs(mesh: Mesh) -> tuple[dict[str, Rpc], dict[str, str]]:
    """Every RPC the mesh serves (reflection at each process) and the target serving each service."""
    rpcs, routes = {}, {}
    for target in set(mesh.config.targets().values()):
        for rpc in served_rpcs(target, mesh.tls):
            rpcs[rpc.name], routes[rpc.service] = rpc, target
    return rpcs, routes


def _drop(dsn: str) -> None:
    base, name = dsn.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _remove_but_logs(mesh: Mesh) -> None:
    """The mesh's files, less its processes' logs (kept to read after a failing history)."""
    for path in mesh.config.data_dir.iterdir():
        if path.name != "logs":
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()


def mesh_engine(new_database: Callable[[], str]) -> Engine:
    """Fresh meshes, each on a new database of the PostgreSQL server `new_database` makes them in."""

    @contextlib.asynccontextmanager
    async def fresh() -> AsyncIterator[tuple[Driver, Settings]]:
        dsn = new_database()
        mesh = loopback_mesh("ogpgy-sim-mesh-", postgres=dsn, log_level="WARNING")
        mesh.extra_env |= _worker_env()
        await asyncio.to_thread(mesh.start)
        try:
            rpcs, routes = await asyncio.to_thread(_rpcs, mesh)
            front = Front(routes, mesh.tls)
            driver = ChaoticDriver(await front.start(), rpcs, real_clock(), Chaos(mesh))
            try:
                yield driver, simulation_settings(mesh.config.data_dir, database="postgres", postgres_dsn=dsn)
            finally:
                await driver.close()
                await front.stop()
        finally:
            await asyncio.to_thread(mesh.stop, 5.0)
            await asyncio.to_thread(_drop, dsn)
            _remove_but_logs(mesh)

    return fresh
