"""Opaque page tokens for keyset pagination.

A token carries the position after which the next page starts and a fingerprint of the query it
belongs to, so a token reused with another filter is refused instead of giving a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from common.validation import Violations, page_size


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


@dataclass(frozen=True)
class PageRequest:
    """A validated page request: where the page starts, how long it is, and its query."""

    after: int
    limit: int
    query: object

    def next_token(self, next_after: int | None) -> str:
        """The next_page_token of a page that ended at `next_after` (None: the last page)."""
        return encode_page_token(next_after, self.query) if next_after else ""


def page_request(v: Violations, size: int, token: str, query: object) -> PageRequest:
    """Validates page_size and page_token together (violations go to `v`)."""
    return PageRequest(decode_page_token(v, token, query), page_size(v, size), query)
