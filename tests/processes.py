"""The bank as a user runs it: `ogpgy up` in a subprocess, stopped or killed by its PID; and the
other commands a test runs as a user would (`run`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ADMIN_PASSWORD = "admin-password-for-tests"


class BankProcess:
    """One `ogpgy up` process. `target` is where it listens once started."""

    def __init__(self, data_dir: Path, *args: str, faults: str = "", port: int = 0) -> None:
        self.command = [
            str(BIN / "ogpgy"),
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *args,
        ]
        self.env = {**os.environ, "OGPGY_FAULTS": faults, "OGPGY_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.proc: subprocess.Popen[str] | None = None
        self.target = ""
        self.output: list[str] = []

    def start(self, timeout: float = 30) -> BankProcess:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            found = re.search(r"serving .* on (127\.0\.0\.1:\d+|\[[0-9a-f:]+\]:\d+)", line)
            if found:
                self.target = found.group(1)
                return self
            if time.monotonic() > deadline:
                break
        self.kill()
        raise RuntimeError(f"ogpgy up did not start: {''.join(self.output)[-2000:]}")

    def wait_exit(self, timeout: float) -> int:
        """Waits for the process to end by itself (e.g. at an injected crash point)."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        if self.proc.stdout is not None:
            self.output.append(self.proc.stdout.read())
        return code

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, as an operator would; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def log(self) -> str:
        return "".join(self.output)


def run(args: list[str], cwd: Path, **env: str) -> str:
    """`args` run in `cwd`; their standard output, or a failure with everything they printed."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout
