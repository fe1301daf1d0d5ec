"""Secrets kept in files of the data directory: made on first start, shared by every process
that reads the same directory."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The secret at `path`, made by `make` (mode 0600) when absent. It is written beside and
    linked into place, so processes that start together all read the one that was linked first,
    never a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(make())
        try:
            with contextlib.suppress(FileExistsError):  # another process made it first: theirs holds
                os.link(draft, path)
        finally:
            draft.unlink()
    return path.read_bytes()


def shared_key(path: Path) -> str:
    """A random 256-bit key (hex) shared through `path`, e.g. a credential both ends of a link read."""
    return secret_file(path, lambda: secrets.token_hex(32).encode()).decode().strip()
