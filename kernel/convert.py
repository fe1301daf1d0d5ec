"""Money, dates and enums between the domain and their protobuf forms, once for every context's
api (requests and answers) and adapters (calls to other contexts, events)."""

from __future__ import annotations

import enum
from datetime import date
from typing import Generic, Protocol, TypeVar

from common.grpc.convert import calendar_date
from common.money import Money, parse_money
from common.validation import Violations
from ogpgy.type.v1 import date_pb2, money_pb2

E = TypeVar("E", bound=enum.Enum)
V = TypeVar("V", bound=int)
V_co = TypeVar("V_co", bound=int, covariant=True)


def money_pb(money: Money) -> money_pb2.Money:
    return money_pb2.Money(currency_code=money.currency, amount=money.amount)


def money_of(message: money_pb2.Money) -> Money:
    """Money another context answered (trusted: its contract promises a valid amount)."""
    return Money.parse(message.currency_code, message.amount)


def requested_money(v: Violations, message: money_pb2.Money, field: str, *, positive: bool = True) -> Money | None:
    """Money from a request, or None with a violation of `field`.currency_code / `field`.amount."""
    return parse_money(v, message.currency_code, message.amount, field, positive=positive)


def date_pb(day: date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def date_of(message: date_pb2.Date) -> date | None:
    """The calendar date a message names; None when unset or impossible (validation reports it)."""
    return calendar_date(message.year, message.month, message.day)


class _EnumType(Protocol[V_co]):
    """What protoc generates for an enum (its numbers by name; the method is protobuf's)."""

    def Value(self, name: str) -> V_co: ...


class ProtoEnum(Generic[E, V]):
    """A domain enum and its protobuf twin, paired by name: the member with value "X" is the
    protobuf value PREFIX_X. Unknown or unspecified protobuf values map to None."""

    def __init__(self, domain: type[E], proto: _EnumType[V], prefix: str) -> None:
        self._to_pb = {member: proto.Value(f"{prefix}{member.value}") for member in domain}
        self._from_pb: dict[int, E] = {number: member for member, number in self._to_pb.items()}

    def pb(self, member: E) -> V:
        return self._to_pb[member]

    def of(self, number: int) -> E | None:
        return self._from_pb.get(number)
