"""Local servers for a mesh on one machine and for the tests: started and stopped by their owner.

Redis: `redis-server` on a loopback port. PostgreSQL: a cluster made with initdb and run with
pg_ctl, as an unprivileged user when started by root (PostgreSQL refuses to run as root).
scripts/bootstrap installs both from Debian when they are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.net import host_port


class LocalServerError(RuntimeError):
    """A local server cannot be started (its binaries are missing, or it did not come up)."""


_handed_out: set[int] = set()  # never the same port twice in one process


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, chosen below the kernel's ephemeral range: a port the kernel itself hands
    out could be taken by some outgoing connection before the server that was told it binds it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randint(max(low - 12_000, 1024), low - 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise LocalServerError("no free port below the ephemeral range")


def wait_for_port(port: int, timeout: float, what: str, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise LocalServerError(f"{what} did not listen on port {port} within {timeout}s")


class RedisServer:
    """One redis-server process; stop() and start() again keep the port (for outage tests).

    With `data_dir` it keeps an append-only file there (a local mesh's events survive a
    restart); without, nothing is persisted (tests).
    """

    def __init__(self, data_dir: Path | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise LocalServerError("redis-server is missing: run scripts/bootstrap (it installs it from Debian)")
        self.binary = binary
        self.host = host
        self.port = port or free_port()
        self.url = f"redis://{host_port(host, self.port)}/0"
        self.data_dir = data_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = ["--save", "", "--appendonly", "no"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            persistence = ["--save", "", "--appendonly", "yes", "--dir", str(self.data_dir)]
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", self.host, "--protected-mode", "no", *persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 10, "redis-server", self.host)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


class MailServer:
    """The mail simulator in a process of its own ('ogpgy mailsim'), for a mesh of processes."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", record: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.url = f"smtp://{host_port(host, self.port)}"
        self.record = record  # every message it accepted, across its restarts (JSON lines)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mesh.cli", "mailsim", "--host", self.host, "--port", str(self.port)]
        if self.record is not None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            command += ["--record", str(self.record)]
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, "the mail simulator", self.host)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise LocalServerError(f"{name} is missing: run scripts/bootstrap (it installs PostgreSQL from Debian)")
    return found


class PostgresServer:
    """A PostgreSQL cluster on a loopback port, trust auth: kept under `root` (a local mesh) or in a
    temporary directory removed after. It syncs its commits to disk, as a bank's must; only the
    tests' throw-away clusters pass `fsync=False` (tests/servers.py), which a bank accepts only
    when told to (`allow_volatile_database`). As root it runs as `nobody`, since PostgreSQL
    refuses to run as root."""

    def __init__(
        self, root: Path | None = None, port: int = 0, host: str = "127.0.0.1", trusted_network: str = "", *, fsync: bool = True
    ) -> None:
        self.host = host
        self.trusted_network = trusted_network  # e.g. "10.77.0.0/24": clients there connect without a password
        self.port = port or free_port()
        self.fsync = fsync
        self.root = root.resolve() if root is not None else Path(tempfile.mkdtemp(prefix="ogpgy-pg-"))
        self.data = self.root / "data"
        self.dsn_base = f"postgresql://postgres@{host_port(host, self.port)}"
        self._user = "nobody" if os.geteuid() == 0 else None
        self._databases = 0

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", self._user, "--", *args] if self._user else list(args)
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user:
            user = pwd.getpwnam(self._user)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        if not self.data.exists():
            no_sync = [] if self.fsync else ["--no-sync"]
            self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", *no_sync, "-E", "UTF8")
            if self.trusted_network:
                with (self.data / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {self.trusted_network} trust\n")
        fsync = "" if self.fsync else " -c fsync=off"
        options = f"-p {self.port} -k {self.root} -c listen_addresses={self.host}{fsync} -c max_connections=300"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        self._databases += 1
        return self.database(f"test_{os.getpid()}_{self._databases}")

    def database(self, name: str) -> str:
        """The DSN of database `name`, created when missing."""
        import psycopg

        with psycopg.connect(f"{self.dsn_base}/postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.dsn_base}/{name}"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
