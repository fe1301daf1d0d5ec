"""Server-assigned identifiers: a readable prefix and 26 characters of ULID."""

from __future__ import annotations

import base64
import os
import threading
import time

_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")
_ENTROPY_CHUNK = 4096


class _Entropy(threading.local):
    """Kernel randomness read 4 KiB at a time: one getrandom() call costs about as much as
    a whole unit of work here, and every write needs fresh ids."""

    def __init__(self) -> None:
        self.buffer = b""
        self.position = 0

    def take(self, size: int) -> bytes:
        if self.position + size > len(self.buffer):
            self.buffer, self.position = os.urandom(_ENTROPY_CHUNK), 0
        chunk = self.buffer[self.position : self.position + size]
        self.position += size
        return chunk


_entropy = _Entropy()


def random_bytes(size: int) -> bytes:
    """Cryptographically random bytes (os.urandom, buffered per thread)."""
    return _entropy.take(size)


def new_id(prefix: str) -> str:
    """`<prefix>_<ULID>`: sortable by creation time (48-bit milliseconds), unguessable (80 random
    bits), in Crockford base32."""
    value = int(time.time() * 1000) << 80 | int.from_bytes(random_bytes(10), "big")
    # 20 bytes are 32 base32 characters without padding; the last 26 carry the 128-bit ULID.
    return f"{prefix}_{base64.b32encode(value.to_bytes(20, 'big'))[-26:].translate(_CROCKFORD).decode()}"
