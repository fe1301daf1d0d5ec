"""Collecting every bad field of a request at once, so a client can fix them all in one go."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from common.errors import FieldViolation, ValidationFailed

T = TypeVar("T")

PLAIN_DECIMAL = re.compile(r"[0-9]{1,6}(\.[0-9]{1,18})?")  # no sign, exponent, NaN or Infinity
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


REQUIRED, INVALID = "FIELD_REQUIRED", "FIELD_INVALID"  # FieldViolation reasons (AIP-193)


class Violations:
    """Accumulates field violations; `raise_if_any` ends validation."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str, reason: str = "") -> None:
        self._items.append(FieldViolation(field, description, reason))

    def check(self, ok: bool, field: str, description: str, reason: str = "") -> bool:
        """Records a violation unless `ok`; returns `ok` so callers can skip dependent checks.
        `reason`: UPPER_SNAKE, when the field's check knows better than FIELD_INVALID."""
        if not ok:
            self.add(field, description, reason)
        return ok

    def guard(self, field: str, parse: Callable[[], object]) -> object | None:
        """Runs a parser, turning its ValueError into a violation of `field`."""
        try:
            return parse()
        except ValueError as exc:
            self.add(field, str(exc))
            return None

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise ValidationFailed(self._items)

    def valid(self, value: T | None) -> T:
        """`value` once validation is over: raises what was found. A parser answers None only
        with a violation, so None without one is a bug in the validation, not the caller's."""
        self.raise_if_any()
        if value is None:
            raise RuntimeError("a validated value is missing, yet no violation was reported")
        return value


def check_text(v: Violations, value: str, field: str, *, max_len: int, required: bool = True) -> None:
    """Free text: bounded, no control characters, not blank when required."""
    if not value.strip():
        v.check(not required, field, "required", REQUIRED)
        return
    v.check(len(value) <= max_len, field, f"at most {max_len} characters")
    v.check(value.isprintable(), field, "must not contain control characters")


def decimal_fraction(v: Violations, text: str, field: str, *, max_places: int, zero_allowed: bool) -> Decimal | None:
    """A rate as a plain decimal string below 1 (and above 0, unless zero_allowed).

    Only digits and a point are accepted: Decimal itself would take "NaN" or "1e-3", and a NaN
    raises on comparison, which a handler would turn into an internal error (found by fuzzing).
    """
    value = Decimal(text) if PLAIN_DECIMAL.fullmatch(text) else None
    ok = (
        value is not None
        and (value >= 0 if zero_allowed else value > 0)
        and value < 1
        and -int(value.as_tuple().exponent) <= max_places
    )
    v.check(ok, field, f"a decimal fraction between 0 and 1 with at most {max_places} decimals, e.g. 0.059")
    return value if ok else None
