"""Fault points for fault tests: the process dies at an exact line (as under kill -9), or a step
fails as a dependency would.

Points are armed by listing them in the OGPGY_FAULTS environment variable (comma separated), for
tests that run the bank as a subprocess, or with `arm()` in-process. Unarmed points cost one set
lookup.
"""

from __future__ import annotations

import os
import sys

_armed: set[str] = set(filter(None, os.environ.get("OGPGY_FAULTS", "").split(",")))


class InjectedFault(RuntimeError):
    """Raised by an armed fail point."""


def arm(*names: str) -> None:
    _armed.update(names)


def disarm(*names: str) -> None:
    _armed.difference_update(names or set(_armed))


def crash_point(name: str) -> None:
    if name in _armed:
        print(f"fault injected: crashing at {name}", file=sys.stderr, flush=True)
        os._exit(137)


def fail_point(name: str) -> None:
    if name in _armed:
        raise InjectedFault(f"fault injected at {name}")
