"""List filters in the AIP-160 syntax, the subset an operator's list needs: comparisons joined by
AND, e.g. `status = NEEDS_OPERATOR AND create_time >= "2026-12-01T00:00:00Z" AND amount_minor > 100000`.

Each list declares the fields it may be filtered on and their kinds; a filter naming anything else,
or using OR, NOT, parentheses, functions or `:` (has), is INVALID_ARGUMENT naming what is accepted,
never a wrong list. The filter is checked for size before it is parsed, and compiled to a SQL
condition with parameters (never text pasted into SQL): the repository adds it to its keyset query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from common.validation import Violations

MAX_FILTER_LENGTH = 1024
MAX_RESTRICTIONS = 16
MAX_INTEGER = 2**63 - 1
FIELD = "filter"

_COMPARATORS = ("<=", ">=", "!=", "=", "<", ">")
_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op><=|>=|!=|=|<|>)|(?P<word>[^\s"\'<>=!]+))')


class Kind(Enum):
    ENUM = "ENUM"  # one of the field's values: = and != only
    TEXT = "TEXT"  # an exact text (an id): = and != only
    INTEGER = "INTEGER"  # a whole number (minor units): every comparator
    TIMESTAMP = "TIMESTAMP"  # RFC 3339, e.g. "2026-12-01T00:00:00Z": every comparator


@dataclass(frozen=True)
class FilterField:
    """A field a list may be filtered on: its name in the filter, its column, its kind; an ENUM's
    values as the contract spells them, mapped to what the column holds."""

    name: str
    column: str
    kind: Kind
    values: dict[str, str] = field(default_factory=dict)
    stored: Callable[[datetime], Any] = datetime.isoformat  # a TIMESTAMP as the column holds it


@dataclass(frozen=True)
class Restriction:
    column: str
    comparator: str
    value: Any


@dataclass(frozen=True)
class Filter:
    """A parsed filter: every restriction must hold. Empty: everything."""

    text: str = ""
    restrictions: tuple[Restriction, ...] = ()

    def sql(self) -> tuple[str, list[Any]]:
        """The condition and its parameters ("1 = 1" when empty), for a WHERE clause."""
        if not self.restrictions:
            return "1 = 1", []
        clauses = [f"{r.column} {'<>' if r.comparator == '!=' else r.comparator} ?" for r in self.restrictions]
        return " AND ".join(clauses), [r.value for r in self.restrictions]


def parse_filter(v: Violations, text: str, fields: Sequence[FilterField]) -> Filter:
    """The filter `text` over `fields`; what is wrong with it goes to `v` under "filter"."""
    if len(text) > MAX_FILTER_LENGTH:
        v.add(FIELD, f"at most {MAX_FILTER_LENGTH} characters")
        return Filter()
    try:
        tokens = _tokens(text)
        restrictions = tuple(_restriction(part, {f.name: f for f in fields}) for part in _conjuncts(tokens))
    except _Refused as refused:
        accepted = ", ".join(f"{f.name} ({f.kind.value.lower()})" for f in fields)
        v.add(FIELD, f"{refused}; a filter is comparisons joined by AND over: {accepted}")
        return Filter()
    if len(restrictions) > MAX_RESTRICTIONS:
        v.add(FIELD, f"at most {MAX_RESTRICTIONS} comparisons")
        return Filter()
    return Filter(text.strip(), restrictions)


class _Refused(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while text[at:].strip():
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise _Refused(f"cannot read the filter at character {at + 1}")
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group(kind)))
        at = match.end()
    return tokens


def _conjuncts(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The comparisons between ANDs, each exactly `field comparator value`."""
    parts: list[list[tuple[str, str]]] = [[]]
    for kind, token in tokens:
        if kind == "word" and token == "AND":
            parts.append([])
        elif kind == "word" and (token in ("OR", "NOT") or "(" in token or ":" in token or (token[0] == "-" and not parts[-1])):
            raise _Refused(f"{token!r} is not supported")
        else:
            parts[-1].append((kind, token))
    if tokens and any(len(part) != 3 for part in parts):
        raise _Refused("each comparison is `field comparator value`, e.g. status = NEEDS_OPERATOR")
    return [part for part in parts if part]


def _restriction(part: list[tuple[str, str]], fields: dict[str, FilterField]) -> Restriction:
    (name_kind, name), (op_kind, comparator), (value_kind, raw) = part
    if name_kind != "word" or op_kind != "op" or value_kind == "op":
        raise _Refused("each comparison is `field comparator value`, e.g. status = NEEDS_OPERATOR")
    spec = fields.get(name)
    if spec is None:
        raise _Refused(f"{name!r} cannot be filtered on")
    if spec.kind in (Kind.ENUM, Kind.TEXT) and comparator not in ("=", "!="):
        raise _Refused(f"{name} takes = or != only")
    value = _unquoted(raw) if value_kind == "string" else raw
    return Restriction(spec.column, comparator, _value(spec, value))


def _unquoted(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def _value(spec: FilterField, value: str) -> Any:
    if spec.kind is Kind.ENUM:
        if value not in spec.values:
            raise _Refused(f"{spec.name} is one of {', '.join(spec.values)}")
        return spec.values[value]
    if spec.kind is Kind.INTEGER:
        if not re.fullmatch(r"-?[0-9]{1,19}", value) or abs(int(value)) > MAX_INTEGER:
            raise _Refused(f"{spec.name} is a whole number")
        return int(value)
    if spec.kind is Kind.TIMESTAMP:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _Refused(f'{spec.name} is an RFC 3339 time, e.g. "2026-12-01T00:00:00Z"') from None
        if moment.tzinfo is None:
            raise _Refused(f"{spec.name} needs a time zone (Z or an offset)")
        try:
            return spec.stored(moment.astimezone(UTC))
        except (OverflowError, ValueError):  # an offset that moves it out of years 1 to 9999
            raise _Refused(f"{spec.name} is a time in years 1 to 9999 in UTC") from None
    if not value.isprintable():
        raise _Refused(f"{spec.name} is printable text")
    return value
