"""The field rules a contract declares (buf.validate), enforced by the server platform.

Shape rules (required, lengths, patterns, ranges, defined enum values) live in the protos, so
every client can check them before sending and every server checks them once, before a handler
runs; the domain keeps the rules that need its knowledge (currencies, KYC, check digits).
"""

from __future__ import annotations

import protovalidate
from google.protobuf.message import Message

from common.errors import FieldViolation
from common.validation import INVALID, REQUIRED

_contract_rules = protovalidate.Validator()  # compiles each message type's rules once


def contract_violations(message: object) -> list[FieldViolation]:
    """What breaks the rules a contract declares on its fields (buf.validate), with each field
    named by its path as the rest of our violations are ("lines[2].amount"). A rule whose id ends
    in ".required" (or the built-in `required`) reports a missing value."""
    if not isinstance(message, Message):  # a raw-bytes method (no contract of ours) has no rules
        return []
    return [
        FieldViolation(_path(found.proto.field), found.proto.message, _reason(found.proto.rule_id))
        for found in _contract_rules.collect_violations(message)
    ]


def _path(path: protovalidate.FieldPathPb | None) -> str:
    text = ""
    for element in path.elements if path is not None else ():
        text += f".{element.field_name}" if text else element.field_name
        subscript = element.subscript  # a oneof: an index, or a map key
        if subscript is not None and subscript.value is not None:
            text += f"[{subscript.value}]"
    return text


def _reason(rule_id: str) -> str:
    return REQUIRED if rule_id == "required" or rule_id.endswith(".required") else INVALID
