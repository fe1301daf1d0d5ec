"""What travels on a bus: a protobuf event with its id, type and headers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Envelope:
    """An event as published. `event_type` is the protobuf full name of the payload."""

    event_id: str
    event_type: str
    payload: bytes
    occurred_at: str
    headers: dict[str, str] = field(default_factory=dict)

    def decode(self, kind: type[M]) -> M:
        if kind.DESCRIPTOR.full_name != self.event_type:
            raise TypeError(f"envelope carries {self.event_type}, not {kind.DESCRIPTOR.full_name}")
        return kind.FromString(self.payload)

    def headers_json(self) -> str:
        return json.dumps(self.headers, sort_keys=True)


def event_type_of(kind: type[Message]) -> str:
    return str(kind.DESCRIPTOR.full_name)
