"""The benchmark matrix judges each goal on its row: a ratio to the row's baseline, a cost (one
minus the ratio), or the value against an earlier run's."""

from __future__ import annotations

from scripts.bench.matrix import GOALS, Row, by_measure, median_of, print_goals


def _rows(distributed: float = 100.0) -> list[Row]:
    return [
        Row("grpc", "GetCustomer (auth + cache), 64 in flight", 900, "calls/s", "echo", 1000),
        Row("grpc", "GetCustomer p50, 1 in flight", 1.2, "ms", "echo", 1.0),
        Row("payments", "internal payments, 16 in flight", 200, "payments/s", "echo", 1000),
        Row("modes", "distributed payments (8 processes, PostgreSQL, Redis)", distributed, "payments/s"),
        Row("modes", "distributed payments, mutual TLS vs plaintext", 95, "payments/s", "plaintext", 100),
        Row("modes", "embedded-colocated payments (PostgreSQL)", 300, "payments/s", "distributed", 100),
        Row("interest", "daily interest, 1,000 accounts, sqlite", 1.4, "s", "floor", 1.0),
        Row("interest", "daily interest, 1,000 accounts, postgres", 2.0, "s", "floor", 1.0),
    ]


def test_each_goal_passes_or_misses_on_its_row() -> None:
    verdicts = {(v["goal"], v["what"]): v["verdict"] for v in print_goals(_rows(250.0), {})}
    assert [verdicts[(g.id, g.what)] for g in GOALS] == [
        "PASS",  # P1: 0.90 >= 0.85
        "MISS",  # P1b: 1.20 > 1.10
        "MISS",  # P3: 0.20 < 0.30
        "n/a (needs --compare)",  # P3b
        "PASS",  # P2: 3.0 >= 2.5
        "PASS",  # P4 SQLite: 1.4 <= 1.5
        "MISS",  # P4 PostgreSQL: 2.0 > 1.5
        "PASS",  # P9: costs 5 % <= 10 %
    ]
    against = print_goals(_rows(250.0), {"distributed payments (8 processes, PostgreSQL, Redis)": 100.0})
    assert [v["verdict"] for v in against if v["goal"] == "P3b"] == ["PASS"]


def test_rounds_merge_to_the_median_of_each_row() -> None:
    merged = median_of([_rows(100.0), _rows(300.0), _rows(200.0)])
    assert by_measure(merged)["distributed payments (8 processes, PostgreSQL, Redis)"].value == 200.0
    assert by_measure(merged)["daily interest, sqlite"].ratio == 1.4
