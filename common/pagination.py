"""Opaque page tokens for keyset pagination.

A token carries the position after which the next page starts and a fingerprint of the query it
belongs to, so a token reused with another filter is refused instead of giving a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json

from common.validation import Violations


def _query_tag(query: object) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:12]


def encode_page_token(after: int, query: object) -> str:
    raw = json.dumps({"a": after, "q": _query_tag(query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(v: Violations, token: str, query: object, field: str = "page_token") -> int:
    """Position encoded in `token` (0 for the first page); a violation if it is not ours."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = int(data["a"])
        if data["q"] != _query_tag(query) or after < 0:
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError):
        v.add(field, "not a page token of this query: pass next_page_token unchanged, with the same filters")
        return 0
