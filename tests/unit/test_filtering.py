"""AIP-160 list filters: what an operator writes selects exactly the rows it says (checked against
a real SQLite table for generated filters and rows), and anything else is refused as
INVALID_ARGUMENT on "filter", never a wrong list."""

from __future__ import annotations

import operator
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import ValidationFailed
from common.filtering import MAX_FILTER_LENGTH, FilterField, Kind, parse_filter
from common.validation import Violations

FIELDS = (
    FilterField("status", "status", Kind.ENUM, {"QUEUED": "QUEUED", "NEEDS_OPERATOR": "NEEDS_OPERATOR", "FAILED": "FAILED"}),
    FilterField("amount_minor", "amount_minor", Kind.INTEGER),
    FilterField("create_time", "created_at", Kind.TIMESTAMP),
    FilterField("debtor_account_id", "debtor", Kind.TEXT),
)
START = datetime(2026, 12, 1, tzinfo=UTC)
OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
ROW = st.tuples(
    st.sampled_from(["QUEUED", "NEEDS_OPERATOR", "FAILED"]),
    st.integers(1, 1000),
    st.integers(0, 10).map(lambda h: START + timedelta(hours=h)),
    st.sampled_from(["acc_A", "acc_B"]),
)
RESTRICTION = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(["=", "!="]), st.sampled_from(["QUEUED", "NEEDS_OPERATOR", "FAILED"])),
    st.tuples(st.just("amount_minor"), st.sampled_from(list(OPS)), st.integers(0, 1001)),
    st.tuples(st.just("create_time"), st.sampled_from(list(OPS)), st.integers(-1, 11).map(lambda h: START + timedelta(hours=h))),
    st.tuples(st.just("debtor_account_id"), st.sampled_from(["=", "!="]), st.sampled_from(["acc_A", "acc_B", "acc_C"])),
)


def _literal(name: str, value: object) -> str:
    if isinstance(value, datetime):
        return f'"{value.isoformat().replace("+00:00", "Z")}"'
    return f'"{value}"' if name == "debtor_account_id" else str(value)


def _parsed(text: str) -> tuple[str, list[object]]:
    v = Violations()
    parsed = parse_filter(v, text, FIELDS)
    v.raise_if_any()
    return parsed.sql()


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(ROW, max_size=30), restrictions=st.lists(RESTRICTION, max_size=4))
def test_a_generated_filter_selects_exactly_the_rows_it_says(
    rows: list[tuple[str, int, datetime, str]], restrictions: list[tuple[str, str, Any]]
) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, status TEXT, amount_minor INTEGER, created_at TEXT, debtor TEXT)")
    db.executemany(
        "INSERT INTO t (status, amount_minor, created_at, debtor) VALUES (?, ?, ?, ?)",
        [(s, a, c.isoformat(), d) for s, a, c, d in rows],
    )
    where, params = _parsed(" AND ".join(f"{n} {op} {_literal(n, value)}" for n, op, value in restrictions))
    selected = [seq for (seq,) in db.execute(f"SELECT seq FROM t WHERE {where} ORDER BY seq", params)]
    index = {"status": 0, "amount_minor": 1, "create_time": 2, "debtor_account_id": 3}
    expected = [i + 1 for i, row in enumerate(rows) if all(OPS[op](row[index[n]], value) for n, op, value in restrictions)]
    assert selected == expected


@pytest.mark.parametrize(
    "text",
    [
        "status = PENDING",  # not a value of the field
        "status > QUEUED",  # enums compare by = and != only
        "colour = red",  # not a field
        "status = QUEUED OR status = FAILED",
        "NOT status = QUEUED",
        "-status = QUEUED",
        "(status = QUEUED)",
        "status:QUEUED",
        "status =",
        "status QUEUED",
        "amount_minor > 1.5",
        "amount_minor > 99999999999999999999",
        'create_time > "yesterday"',
        'create_time > "2026-12-01T00:00:00"',  # no zone
        'create_time > "0001-01-01T00:00:00+05:00"',  # before year 1 in UTC
        'create_time > "9999-12-31T23:59:59-05:00"',  # after year 9999 in UTC
        "status = QUEUED AND",
        'debtor_account_id = "unterminated',
        "status = QUEUED " + "AND amount_minor > 1 " * 16,
        "x" * (MAX_FILTER_LENGTH + 1),
    ],
)
def test_anything_else_is_refused_on_the_filter_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        _parsed(text)
    assert [violation.field for violation in refused.value.violations] == ["filter"]


def test_the_empty_filter_is_everything_and_quotes_may_hold_anything() -> None:
    assert _parsed("") == ("1 = 1", [])
    assert _parsed("  ") == ("1 = 1", [])
    assert _parsed("debtor_account_id = 'a b' AND amount_minor >= 5") == ("debtor = ? AND amount_minor >= ?", ["a b", 5])
    assert _parsed('debtor_account_id != "a \\" b"') == ("debtor <> ?", ['a " b'])
    assert _parsed("amount_minor > -1") == ("amount_minor > ?", [-1]), "a negative number is a value, not a negation"
