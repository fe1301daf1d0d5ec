"""Hypothesis strategies for any protobuf message, built from its descriptor: random and hostile
values (oversized and unusual unicode strings, extreme numbers, unknown enum values, missing
fields, ids that look right), and raw bytes that are not a valid message at all."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

LOOKS_RIGHT = [
    "acc_CASH_EUR",
    "acc_TREASURY_EUR",
    "acc_INTEREST_EXPENSE_EUR",
    "cus_00000000000000000000000000",
    "acc_00000000000000000000000000",
    "EUR",
    "USD",
    "GB",
    "1000.00",
    "-1.00",
    "0.001",
    "1e9",
    "NaN",
    "",
    "DE89370400440532013000",
    "admin",
    "'; DROP TABLE accounts; --",
    "%s%s%n",
    "../../etc/passwd",
]
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(LOOKS_RIGHT),
        st.text(max_size=40),
        st.text(min_size=5_000, max_size=20_000),
        st.text(alphabet=st.characters(categories=["Cs", "Co", "Cf", "Mn", "So"], exclude_characters="\ud800"), max_size=30),
    )


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low < 0 else 1, 1]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text().map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == FieldDescriptor.TYPE_DOUBLE else 32)
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, max(v.number for v in field.enum_type.values) + 3)  # unknown values too
    low, high = _INT_RANGES[kind]
    return _integers(low, high)


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _scalar(field)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set (at most 3 levels of nesting)."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # no maps in our contracts' requests
        value = _value(field, depth)
        fields[field.name] = st.lists(value, max_size=4) if field.is_repeated else value
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: _build(cls, values))


def _build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        try:
            if field.is_repeated:
                target = getattr(message, name)
                for item in value:
                    target.add().CopyFrom(item) if field.type == FieldDescriptor.TYPE_MESSAGE else target.append(item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError):
            continue  # a value protobuf itself refuses (e.g. a lone surrogate) is not sent
    return message


def payloads(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Request bytes: mostly well-formed messages, sometimes bytes that parse as nothing sensible."""
    return st.one_of(messages(descriptor).map(lambda m: m.SerializeToString()), st.binary(max_size=200))
