"""Runs a test selection against a work copy with a mutant in it: the profile's inner loop.

Starting pytest costs more than most selections take to run (imports of pytest, hypothesis,
grpc, protobuf: about 2 s of every 4). So the third-party modules the selections import are
imported once, here, and each run is a fork of this process that imports the project from the
work copy (never from the work tree: nothing of the project is imported before the fork) and
runs pytest. A run that forking cannot serve (threads already started here) goes through a fresh
interpreter instead, slower and the same. Used by scripts/mutation.py.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

# The project's own top-level packages: never imported by the runner itself.
PROJECT = frozenset({"common", "kernel", "services", "mesh", "tests", "scripts", "og", "ogpgy", "buf", "velocitypay", "conftest"})
# What pytest is given for every run: quiet, first failure ends it, PostgreSQL left out (the rules
# under test do not depend on the engine, and a PostgreSQL server costs seconds per run),
# hypothesis's examples the same on every run (a mutant's fate is not a draw).
PYTEST_ARGS = (
    "-x",
    "-q",
    "-p",
    "no:cacheprovider",
    "-k",
    "not postgres",
    "--hypothesis-seed=0",
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",  # the plugins imported before the fork
)

_WARM = """
import sys, pytest
out, tests = sys.argv[1], sys.argv[2:]
pytest.main(["-q", "--collect-only", "-p", "no:cacheprovider", *tests])
project = {PROJECT}
names = sorted(n for n, m in list(sys.modules.items())
               if n.split(".")[0] not in project and not (getattr(m, "__file__", None) or "").startswith({root!r}))
open(out, "w").write("\\n".join(names))
"""


@dataclass(frozen=True)
class Run:
    status: str  # killed (a test failed, or the module broke the collection), survived, timeout
    seconds: float
    output: str


@contextmanager
def work_copy(root: Path) -> Iterator[Path]:
    """The work tree without its tools and caches; the mutants are written here, never in `root`."""
    base = Path(tempfile.mkdtemp(prefix="ogpgy-mutation-"))
    try:
        ignored = shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "__pycache__", "var", ".*_cache", ".hypothesis", "build"
        )
        shutil.copytree(root, base / "tree", ignore=ignored)
        yield base / "tree"
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Runner:
    """Runs pytest on a selection of the work copy `copy`, by fork when it can."""

    def __init__(self, copy: Path, *, fork: bool = True) -> None:
        self.copy = copy
        self.bytecode = copy.parent / "bytecode"
        self.env = {"PYTHONPATH": os.pathsep.join([str(copy), str(copy / "gen")]), "PYTHONPYCACHEPREFIX": str(self.bytecode)}
        self.fork = fork and hasattr(os, "fork")
        self._log = copy.parent / "run.log"

    def warm(self, tests: list[str]) -> None:
        """Imports here the third-party modules that `tests` import (found in a fresh interpreter)."""
        if not self.fork:
            return
        listing = self.copy.parent / "modules.txt"
        script = _WARM.replace("{PROJECT}", ", ".join(repr(p) for p in sorted(PROJECT))).replace("{root!r}", repr(str(self.copy)))
        command = [sys.executable, "-c", script, str(listing), *tests]
        subprocess.run(command, cwd=self.copy, env={**os.environ, **self.env}, capture_output=True, check=False)
        names = listing.read_text().split() if listing.exists() else []
        for name in names:
            with suppress(Exception):  # an alias or a module that only imports in its own context
                importlib.import_module(name)
        if threading.active_count() > 1:  # a fork would copy a thread's locks without the thread
            print(f"mutation: {threading.active_count() - 1} thread(s) after the imports; running without fork", file=sys.stderr)
            self.fork = False

    def run(self, tests: tuple[str, ...], timeout: float | None, changed: Path) -> Run:
        """Runs `tests` after `changed` (a file of the work copy) was written."""
        self.forget_bytecode(changed)
        started = time.monotonic()
        args = [*PYTEST_ARGS, *tests]
        status = self._forked(args, timeout) if self.fork else self._spawned(args, timeout)
        output = self._log.read_text(errors="replace") if self._log.exists() else ""
        return Run(status, time.monotonic() - started, output)

    def forget_bytecode(self, changed: Path) -> None:
        """A compiled module is checked by its source's size and mtime in seconds: two mutants of
        the same size written within a second would share it. Removed, the run compiles it anew."""
        cached = self.bytecode / changed.parent.relative_to("/")
        for pyc in cached.glob(f"{changed.stem}.*.pyc"):
            pyc.unlink()

    def _forked(self, args: list[str], timeout: float | None) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            self._child(args)
        return _wait(pid, timeout)

    def _child(self, args: list[str]) -> None:
        code = 3
        try:
            os.setsid()  # its own group: a timeout ends it with whatever it started
            log = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.chdir(self.copy)
            os.environ.update(self.env)  # what the servers the tests start import, too
            sys.pycache_prefix = str(self.bytecode)
            sys.path[:0] = [str(self.copy), str(self.copy / "gen")]
            import pytest

            code = int(pytest.main(args))
        except BaseException:  # noqa: BLE001 - the child reports any failure as its exit code
            import traceback

            traceback.print_exc()
        finally:
            with suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _spawned(self, args: list[str], timeout: float | None) -> str:
        with self._log.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", *args],
                cwd=self.copy,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _end_group(proc.pid)
                proc.wait()
                return "timeout"
        _end_group(proc.pid)
        return "survived" if code == 0 else "killed"


def _wait(pid: int, timeout: float | None) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _end_group(pid)  # anything the run started and left behind
            return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        if deadline is not None and time.monotonic() > deadline:
            _end_group(pid)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def _end_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
