"""Every state-changing RPC, aimed at the victim by every caller that is not her (another customer,
relationship managers assigned and not, every context's identity alone, a context relaying for
another customer), with deadlines from 0.1 ms to 50 ms, cancelled mid-call, and sent twice. Not
one is answered OK; and every table of every context, read after the background workers had time
to act, is exactly what it was before."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from tests.adversarial.attacks import ATTACKS, Attack, send, send_and_cancel
from tests.adversarial.snapshot import differences, snapshot
from tests.adversarial.world import Principal, World, build_world, quiet, running_bank, settings_for

DEADLINES = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
REFUSED = {grpc.StatusCode.PERMISSION_DENIED}
CUT_SHORT = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
WORKERS_SECONDS = 2.5  # several passes of the payment worker (stale after 0.5 s, polling every 50 ms)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    settings = settings_for(tmp_path)
    async with running_bank(settings) as bank:
        world = await build_world(bank, settings)
        await quiet(world)
        yield world


async def _attack(channel: aio.Channel, world: World, attack: Attack, who: Principal, tag: str, rng: random.Random) -> list[str]:
    """Every way to send one attack as one principal; the answers that are wrong."""
    wrong = []
    request = attack.build(world.victim, world, tag)
    for attempt in ("first", "retry"):  # the same request twice: a retry never turns a refusal around
        code = await send(channel, attack, request, who.metadata)
        if code not in REFUSED:
            wrong.append(f"{attempt}: {code.name}")
    for i, deadline in enumerate(DEADLINES):
        code = await send(channel, attack, attack.build(world.victim, world, f"{tag}d{i}"), who.metadata, deadline)
        if code not in REFUSED | CUT_SHORT:
            wrong.append(f"deadline {deadline * 1000:g} ms: {code.name}")
    code = await send_and_cancel(
        channel, attack, attack.build(world.victim, world, f"{tag}c"), who.metadata, rng.uniform(0, 0.004)
    )
    if code not in REFUSED | CUT_SHORT:
        wrong.append(f"cancelled: {code.name}")
    return wrong


async def test_no_caller_but_the_owner_changes_anything_of_hers(world: World) -> None:
    before = await snapshot(world.settings)
    rng = random.Random(12)
    wrong: dict[str, list[str]] = {}
    cases = 0
    async with aio.insecure_channel(world.bank.target) as channel:
        for a, attack in enumerate(ATTACKS):
            attackers = world.attackers(attack.path, attack.exempt, attack.scheduled_by)
            answers = await asyncio.gather(
                *(_attack(channel, world, attack, who, f"{a}x{p}", rng) for p, who in enumerate(attackers))
            )
            cases += len(attackers) * (2 + len(DEADLINES) + 1)
            for who, bad in zip(attackers, answers, strict=True):
                if bad:
                    wrong[f"{who.name} -> {attack.name}"] = bad
    assert not wrong, f"answers that are not a refusal: {wrong}"
    await asyncio.sleep(WORKERS_SECONDS)
    await quiet(world)
    changed = differences(before, await snapshot(world.settings))
    print(f"\n{cases} refused calls ({len(ATTACKS)} attacks), every table unchanged")
    assert not changed, f"tables changed by refused calls: {changed}"
    assert cases > 1000
