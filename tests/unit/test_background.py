"""The one background loop (common/background.py): passes while leading, failures logged once with
their traceback and then in a line, the healing logged, and a stop that ends it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common.background import Background


async def test_a_loop_passes_only_while_it_leads_and_stops_when_asked() -> None:
    passes: list[int] = []
    leading, three = asyncio.Event(), asyncio.Event()

    async def lead() -> bool:
        return leading.is_set()

    async def work() -> None:
        passes.append(1)
        if len(passes) >= 3:
            three.set()

    loop = Background("t", work, lambda: asyncio.sleep(0.001), logging.getLogger("t"), lead=lead)
    loop.start()
    await asyncio.sleep(0.05)
    assert passes == [], "no lease, no pass"
    leading.set()
    await asyncio.wait_for(three.wait(), 5)
    await loop.stop()
    done = len(passes)
    await asyncio.sleep(0.02)
    assert len(passes) == done, "stopped means no further pass"


async def test_a_failing_loop_logs_the_traceback_once_then_a_line_and_its_healing(caplog: pytest.LogCaptureFixture) -> None:
    outcomes = [ValueError("down"), ValueError("down"), ValueError("down"), None]

    async def work() -> None:
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome

    loop = Background("refresher", work, lambda: asyncio.sleep(0), logging.getLogger("t"))
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(4):
            await loop.round()
    records = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records == [
        (logging.WARNING, "refresher: pass failed", True),
        (logging.WARNING, "refresher: pass failed again (2 in a row): ValueError('down')", False),
        (logging.WARNING, "refresher: pass failed again (3 in a row): ValueError('down')", False),
        (logging.INFO, "refresher: recovered after 3 failed passes", False),
    ]


async def test_rest_first_leaves_the_first_pass_to_after_a_rest() -> None:
    passes: list[int] = []
    rested = asyncio.Event()

    async def rest() -> None:
        await rested.wait()

    loop = Background("t", lambda: asyncio.sleep(0, passes.append(1)), rest, logging.getLogger("t"))
    loop.start(rest_first=True)
    await asyncio.sleep(0.02)
    assert passes == []
    rested.set()
    await asyncio.sleep(0.02)
    assert passes
    await loop.stop()
