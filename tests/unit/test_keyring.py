"""The signing key ring: a rotated key is published before it signs, and the key it replaces stays
published while tokens it signed may live; keys are files of mode 0600."""

from __future__ import annotations

from pathlib import Path

from common.security.keyring import KeyRing, rotate
from common.security.tokens import key_id

PUBLISH, LIFETIME = 10.0, 3600.0


def _kids(ring: KeyRing, now: float) -> list[str]:
    return [key_id(k) for k in ring.published(now)]


def test_a_rotated_key_is_published_first_signs_later_and_the_old_one_retires_after_a_token_lifetime(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "first.pem", tmp_path / "rotated", PUBLISH, LIFETIME)
    first = key_id(ring.signing(1000.0).public_key())
    assert _kids(ring, 1000.0) == [first]
    path = rotate(tmp_path / "rotated", now=1000.0)
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "first.pem").stat().st_mode & 0o777 == 0o600
    ring.reload()
    second = _kids(ring, 1000.0)[-1]
    assert second != first
    assert key_id(ring.signing(1005.0).public_key()) == first, "not yet published long enough"
    assert _kids(ring, 1005.0) == [first, second], "but published already"
    assert key_id(ring.signing(1010.0).public_key()) == second
    assert _kids(ring, 1010.0 + LIFETIME - 1) == [first, second], "tokens the first signed may still live"
    assert _kids(ring, 1010.0 + LIFETIME) == [second], "retired once they cannot"


def test_the_first_key_signs_at_once_and_a_reload_keeps_it(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "first.pem", tmp_path / "rotated", PUBLISH, LIFETIME)
    first = key_id(ring.signing().public_key())
    again = KeyRing(tmp_path / "first.pem", tmp_path / "rotated", PUBLISH, LIFETIME)
    assert key_id(again.signing().public_key()) == first
    (tmp_path / "rotated").mkdir()
    (tmp_path / "rotated" / "signing-key-notanumber.pem").write_text("not a key")  # not the ring's: ignored
    again.reload()
    assert _kids(again, 0.0) == [first]
