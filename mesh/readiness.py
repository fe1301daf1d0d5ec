"""Readiness: whether what this process needs answers, on gRPC health (the "readiness" service),
for Kubernetes' readiness probe; "liveness" stays SERVING while the process runs.

Needed: each served context's database, the event bus (Redis, when events go through it), the
keys that tokens are verified with (a process that only verifies learns them from identity: until
then it would refuse every token), and each context imported from another process, asked for its
liveness, not its readiness: contexts import each other in a DAG today, but a cycle of readiness
checks would never become ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.background import Background, every
from common.db.base import Tx
from common.db.databases import ContextDatabase
from common.di import BuiltContexts
from common.di.errors import MissingProviderError
from common.events.bus import EventBus
from common.grpc.channels import ChannelPool
from common.grpc.server import LIVENESS, GrpcServer
from common.security.component import Security

log = logging.getLogger("ogpgy.readiness")
CHECK_EVERY_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 1.0

Check = Callable[[], Awaitable[object]]


async def _select_one(tx: Tx) -> None:
    await tx.fetchone("SELECT 1")


def _database_check(db: ContextDatabase) -> Check:
    return lambda: db.read(_select_one)


def _keys_check(security: Security) -> Check:
    async def known() -> None:
        if not security.key_set:
            raise LookupError("no key to verify tokens with yet")

    return known


def _import_check(channel: aio.Channel, context: str) -> Check:
    stub = health_pb2_grpc.HealthStub(channel)

    async def alive() -> None:
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=LIVENESS), timeout=CHECK_TIMEOUT_SECONDS)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise ConnectionError(f"{context} is not live")

    return alive


def readiness_checks(
    contexts: BuiltContexts, pool: ChannelPool, served: Iterable[str], remote: Iterable[str], *, learns_keys: bool
) -> dict[str, Check]:
    """What must answer for the process to be ready, by name: the served contexts' databases, the
    event bus, the keys tokens are verified with where they come from identity, and the contexts
    the served ones reach in another process."""
    checks: dict[str, Check] = {}
    for name in served:
        with contextlib.suppress(MissingProviderError):  # a context without tables (interest, the simulators)
            checks[f"database {name}"] = _database_check(contexts[name].resolve(ContextDatabase))
    infrastructure = contexts["infrastructure"]
    checks["event bus"] = infrastructure.resolve(EventBus).reachable
    if learns_keys:  # from identity's feed (a process that signs holds its own; the simulators take no tokens)
        checks["token keys"] = _keys_check(infrastructure.resolve(Security))
    for name in remote:
        channel = pool.channel(name)
        if isinstance(channel, aio.Channel):
            checks[f"context {name}"] = _import_check(channel, name)
    return checks


class Readiness:
    """Asks every check every CHECK_EVERY_SECONDS and answers the readiness probe accordingly."""

    def __init__(self, server: GrpcServer, checks: dict[str, Check]) -> None:
        self._server = server
        self._checks = checks
        self._rounds = Background("readiness", self._round, every(CHECK_EVERY_SECONDS), log)
        self.failing: list[str] = []

    async def check(self) -> bool:
        results = await asyncio.gather(
            *(asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS) for check in self._checks.values()), return_exceptions=True
        )
        failing = [name for name, result in zip(self._checks, results, strict=True) if isinstance(result, BaseException)]
        if failing != self.failing:
            log.warning("not ready: %s unreachable", ", ".join(failing)) if failing else log.info("ready again")
        self.failing = failing
        await self._server.set_ready(not failing)
        return not failing

    async def _round(self) -> None:
        await self.check()

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()
