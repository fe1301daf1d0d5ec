"""The example files the README hands to people are files the bank accepts."""

from __future__ import annotations

from pathlib import Path

from common.validation import Violations
from services.payment.exports import read_pain001

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_the_example_payroll_is_a_valid_pain001_of_three_lines() -> None:
    v = Violations()
    batch = read_pain001(v, (EXAMPLES / "payroll.xml").read_bytes())
    v.raise_if_any()
    assert batch is not None and batch.number_of_transactions == 3 and batch.control_sum == "3642.25"
    assert [line.external.name for line in batch.lines] == ["Max Muster", "Jeanne Martin", "Jan de Vries"]
    assert {line.reference for line in batch.lines} == {"Salary December 2026"}
