"""Opaque, tamper-evident page tokens for keyset pagination (AIP-158).

A token carries the position after which the next page starts (a sequence number or a text key),
a tag of the query it belongs to and an expiry, signed with a key of the server: a token edited,
made up, used with other filters or kept too long is INVALID_ARGUMENT, never a wrong page and
never an internal error. page_size 0 means the default; above the maximum it is the maximum;
negative is INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import TypeGuard

from common.validation import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Violations

Position = int | str  # a sequence number (ascending lists) or a text key (e.g. a date)
MAX_POSITION = 2**63 - 1  # a BIGINT: beyond it the database would overflow
MAX_KEY_LENGTH = 128
TOKEN_TTL_SECONDS = 24 * 3600
_MAC_BYTES = 16
_INVALID = "not a page token of this query: pass next_page_token unchanged, with the same filters"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _query_tag(query: object) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def _valid_position(position: object) -> TypeGuard[Position]:
    if isinstance(position, bool):
        return False
    if isinstance(position, int):
        return 0 < position <= MAX_POSITION
    return isinstance(position, str) and 0 < len(position) <= MAX_KEY_LENGTH and position.isprintable()


@dataclass(frozen=True)
class PageRequest:
    """A validated page request: where the page starts (None: at the beginning), how long it is,
    and how to make the token of the page after it."""

    after: Position | None
    limit: int
    query: object
    tokens: PageTokens

    @property
    def after_seq(self) -> int:
        """The position as a sequence number (0 at the beginning), for lists ordered by seq."""
        return self.after if isinstance(self.after, int) else 0

    @property
    def after_key(self) -> str:
        """The position as a text key ('' at the beginning), for lists ordered by a key."""
        return self.after if isinstance(self.after, str) else ""

    def next_token(self, next_after: Position | None) -> str:
        """The next_page_token of a page that ended at `next_after` (None or empty: the last page)."""
        return self.tokens.encode(next_after, self.query) if next_after else ""


class PageTokens:
    """Signs and checks page tokens with a server key (the same on every replica)."""

    def __init__(self, key: bytes, ttl_seconds: int = TOKEN_TTL_SECONDS) -> None:
        self._key = key
        self._ttl = ttl_seconds

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: Position, query: object, *, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self._ttl)
        payload = json.dumps({"p": position, "q": _query_tag(query), "e": expires}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, v: Violations, token: str, query: object, field: str = "page_token") -> Position | None:
        """The position in `token` (None for the first page); a violation if it is not ours."""
        if not token:
            return None
        data = self._verified(token)
        position = data.get("p") if data is not None else None
        if data is None or data.get("q") != _query_tag(query) or not _valid_position(position):
            v.add(field, _INVALID)
            return None
        expires = data.get("e")
        if not isinstance(expires, int) or expires < time.time():
            v.add(field, "expired: start again from the first page (without page_token)")
            return None
        return position

    def _verified(self, token: str) -> dict[str, object] | None:
        if len(token) > 1024 or token.count(".") != 1:
            return None
        payload_text, mac_text = token.split(".")
        try:
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def request(self, v: Violations, size: int, token: str, query: object) -> PageRequest:
        """Validates page_size and page_token together (violations go to `v`)."""
        return PageRequest(self.decode(v, token, query), page_size(v, size), query, self)


def page_size(v: Violations, value: int, field: str = "page_size") -> int:
    """0: the default; above the maximum: the maximum (AIP-158); negative: bad input."""
    v.check(value >= 0, field, f"must not be negative (0 means {DEFAULT_PAGE_SIZE}; at most {MAX_PAGE_SIZE} are returned)")
    return min(value, MAX_PAGE_SIZE) if value > 0 else DEFAULT_PAGE_SIZE
