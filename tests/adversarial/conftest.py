"""The adversarial suites' world: a victim and her attackers, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.adversarial.world import World, build_world, quiet, running_bank, settings_for


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    engine = (
        {"database": "postgres", "postgres_dsn": request.getfixturevalue("postgres").new_database()}
        if request.param == "postgres"
        else {}
    )
    settings = settings_for(tmp_path, **engine)
    async with running_bank(settings) as bank:
        world = await build_world(bank, settings)
        await quiet(world)
        yield world
