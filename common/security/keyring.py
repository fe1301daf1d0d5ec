"""The bank's token-signing keys as a ring: the key that signs, a newer one published before it
signs, and older ones published while tokens they signed may still be alive.

Keys are files (PEM, mode 0600): the first one at the configured key path, each rotation a file
`<rotated dir>/signing-key-<epoch ms>.pem`. Rotating is writing a file; every process that holds
the keys reads the folder again on its refresh period. A rotated key waits `publish_seconds`
before it signs, longer than any verifier's refresh period, so that no process meets a token
whose key it has not learnt yet; a superseded key stays published for a token lifetime after the
new one began to sign, so that no token it signed is refused before it expires.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.security.secrets import secret_file
from common.security.tokens import load_or_create_private_key, new_private_pem

ROTATED = re.compile(r"signing-key-(\d+)\.pem")


@dataclass(frozen=True)
class RingKey:
    made_at: float  # epoch seconds; the first key counts as made at 0 (it signs from the start)
    key: Ed25519PrivateKey


def rotate(folder: Path, now: float | None = None) -> Path:
    """Writes a new key into the ring's folder; it signs once published long enough."""
    made = int((time.time() if now is None else now) * 1000)
    path = folder / f"signing-key-{made}.pem"
    secret_file(path, new_private_pem)
    return path


class KeyRing:
    """The keys of the ring as last read; `reload()` lists the folder again and reads only the
    files it has not read yet (a key file never changes once written)."""

    def __init__(self, first: Path, folder: Path, publish_seconds: float, lifetime_seconds: float) -> None:
        self._folder = folder
        self._publish = publish_seconds
        self._lifetime = lifetime_seconds
        self._read: dict[Path, RingKey] = {first: RingKey(0.0, load_or_create_private_key(first))}
        self._keys: list[RingKey] = []
        self.reload()

    def reload(self) -> None:
        for path in self._folder.glob("signing-key-*.pem"):
            match = ROTATED.fullmatch(path.name)
            if match and path not in self._read:
                self._read[path] = RingKey(int(match.group(1)) / 1000, load_or_create_private_key(path))
        self._keys = sorted(self._read.values(), key=lambda k: k.made_at)

    def signing(self, now: float | None = None) -> Ed25519PrivateKey:
        """The newest key published for long enough."""
        return self._signing(time.time() if now is None else now).key

    def _signing(self, now: float) -> RingKey:
        ready = [k for k in self._keys if k.made_at <= now - self._publish]
        return ready[-1] if ready else self._keys[0]

    def published(self, now: float | None = None) -> list[Ed25519PublicKey]:
        """The signing key, the ones that will sign, and the ones that signed within a token lifetime."""
        moment = time.time() if now is None else now
        signing = self._signing(moment)
        return [k.key.public_key() for k in self._keys if k is signing or k.made_at > signing.made_at or self._alive(k, moment)]

    def _alive(self, key: RingKey, now: float) -> bool:
        """Whether a token `key` signed may still be alive: it signed until its successor began to."""
        successors = [k for k in self._keys if k.made_at > key.made_at]
        stopped_signing = successors[0].made_at + self._publish if successors else now
        return now - stopped_signing < self._lifetime
