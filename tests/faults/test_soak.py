"""The soak, short: the mixed load on the distributed mesh without faults makes no errors, and every
interval reports operations, latency percentiles and every process's memory. The long soak is
`scripts/soak.py --seconds N`."""

from __future__ import annotations

import math

import pytest

from mesh.embedded import CONTEXT_NAMES
from scripts.soak import run_soak

pytestmark = pytest.mark.slow


def test_a_short_soak_reports_and_makes_no_errors() -> None:
    report = run_soak(seconds=9, interval=3, workers=4, echo=False)
    assert report.errors == {}
    assert len(report.intervals) == 3 and report.operations > 100
    for interval in report.intervals:
        assert interval.operations > 0 and math.isfinite(interval.p99_ms) and interval.p50_ms <= interval.p99_ms
        assert set(interval.rss_mb) == {f"{name}[0]" for name in CONTEXT_NAMES}
        assert all(mb > 10 for mb in interval.rss_mb.values()), "every process alive and measured"
