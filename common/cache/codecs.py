"""Codecs for values kept in the shared (L2) cache."""

from __future__ import annotations


class TextCodec:
    """Plain strings (ids, small flags)."""

    def encode(self, value: str) -> bytes:
        return value.encode()

    def decode(self, data: bytes) -> str:
        return data.decode()
