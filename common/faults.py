"""Crash points for fault tests: the process dies at an exact line, as under kill -9.

Named points are armed by listing them in the OGPGY_FAULTS environment variable (comma
separated). Unarmed points cost one set lookup. Used only by tests that start the bank as a
subprocess and restart it to prove that nothing is lost or applied twice.
"""

from __future__ import annotations

import os
import sys

ARMED = frozenset(filter(None, os.environ.get("OGPGY_FAULTS", "").split(",")))


def crash_point(name: str) -> None:
    if name in ARMED:
        print(f"fault injected: crashing at {name}", file=sys.stderr, flush=True)
        os._exit(137)
