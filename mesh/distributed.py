"""Distributed mode: one process per process kind and replica of the mesh configuration.

`serve_settings` turns the configuration into the Settings of one process (`ogpgy serve`);
`Mesh` is what `ogpgy up --distributed` runs: the local Redis and PostgreSQL when the
configuration says "local", the secrets every process shares (signing key, first admin's
password), then every process, each checked SERVING through gRPC health before the mesh is
declared up. Stopping the mesh sends SIGTERM to every process (each drains gracefully), then
stops the local servers.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.config import Settings
from common.security.component import Security
from common.security.pki import LEAF_LIFETIME
from common.security.secrets import secret_file
from common.security.tokens import jwks
from mesh.config import EXTERNAL, LOCAL, MeshConfig, MeshConfigError, ProcessSpec
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.front_door import FrontDoor, issue_certificate
from mesh.local_servers import MailServer, PostgresServer, RedisServer
from mesh.pki import issue_mesh_certificates, operator_credentials, pki_of

log = logging.getLogger("ogpgy.mesh")
DATABASE = "ogpgy"
PASSWORD_FILE = "admin-password"


def serve_settings(config: MeshConfig, process: str, replica: int, admin_password: str = "") -> Settings:
    """The Settings of replica `replica` of `process`: its own address, everyone else's targets."""
    spec = config.process(process)
    if not 0 <= replica < spec.replica_count:
        raise MeshConfigError(f"process '{process}' has replicas 0..{spec.replica_count - 1}, not {replica}")
    local = [("redis", config.redis, "REDIS_URL"), ("postgres", config.postgres, "POSTGRES_DSN")]
    if "notification" in spec.contexts:
        local.append(("smtp", config.smtp, "SMTP_URL"))
    for what, value, variable in local:
        if value == LOCAL:
            raise MeshConfigError(
                f"{what} = \"local\" is started by 'ogpgy up --distributed'; to serve a process on its own, "
                f"set OGPGY_{variable} or give an address in the file"
            )
        if value == EXTERNAL:
            raise MeshConfigError(f'{what} = "external": set OGPGY_{variable} (in Kubernetes, the Secret\'s key of that name)')
    host, port = spec.listen_address(replica).rsplit(":", 1)
    connect_port = _connect_port(spec, replica, host)
    return Settings(
        http_port=connect_port,
        # only holders of a mesh certificate reach it (the front door, pooling its connections
        # from one address): one address may hold as many connections as the port
        http_connections_per_address=Settings().http_max_connections if connect_port else Settings().http_connections_per_address,
        data_dir=config.data_dir,
        host=host.strip("[]"),
        port=int(port),
        health_port=spec.health_port or None,
        addresses=config.targets(),
        # Leases and saga ownership follow the instance: a pod's name under Kubernetes
        # (OGPGY_INSTANCE_NAME from the pod's metadata), else the process and replica.
        instance_name=os.environ.get("OGPGY_INSTANCE_NAME") or f"{process}[{replica}]",
        database="postgres",
        postgres_dsn=config.postgres,
        redis_url=config.redis,
        smtp_url="" if config.smtp == LOCAL else config.smtp,
        admin_password=admin_password or _read_password(config.data_dir),
        mtls=config.mutual_tls,
        process=process,
        # With mutual TLS only the identity context's process holds the signing key; without it
        # (a loopback mesh for comparisons) every process signs its service tokens, as before.
        signs_tokens="identity" in spec.contexts or not config.mutual_tls,
        fraud_rules_path=Path(os.environ["OGPGY_FRAUD_RULES"]) if os.environ.get("OGPGY_FRAUD_RULES") else None,
    )


def _connect_port(spec: ProcessSpec, replica: int, host: str) -> int | None:
    """The replica's Connect and gRPC-Web port, when it serves one (on the host it listens on)."""
    address = spec.connect_address(replica)
    if not address:
        return None
    connect_host, _, connect_port = address.rpartition(":")
    if connect_host != host:
        raise MeshConfigError(
            f"process '{spec.name}' replica {replica}: connect {address} must be on the host it listens on ({host})"
        )
    return int(connect_port)


def _read_password(data_dir: Path) -> str:
    path = data_dir / PASSWORD_FILE
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def ensure_shared_secrets(data_dir: Path, admin_password: str = "") -> str:
    """The signing key and the first admin's password, made once before any process starts (each
    process would otherwise race to make its own)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    # The keys as published when the mesh starts: what the processes that only verify begin with.
    settings.public_keys_path().write_text(jwks(Security(settings).public_keys()))
    secret_file(settings.page_key_path(), lambda: secrets.token_bytes(32))
    path = data_dir / PASSWORD_FILE
    if admin_password:
        return admin_password
    return secret_file(path, lambda: (secrets.token_urlsafe(18) + "\n").encode()).decode().strip()


def check_serving(address: str, timeout: float = 1.0, tls: grpc.ChannelCredentials | None = None) -> bool:
    """Whether the process at `address` answers health SERVING (its every service is ready)."""
    try:
        with grpc.insecure_channel(address) if tls is None else grpc.secure_channel(address, tls) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


RESTART_BACKOFF_MAX = 30.0  # seconds between restarts of a replica that keeps dying
STEADY_SECONDS = 60.0  # a replica up this long has recovered: its next death restarts it at once
SUPERVISOR_FILE = "supervisor.json"  # each replica's pid and restarts, for `ogpgy status`


@dataclass
class Replica:
    process: str
    index: int
    address: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0  # by the supervisor
    deaths_in_a_row: int = 0  # deaths within STEADY_SECONDS of a start, for the backoff
    last_exit: int | None = None
    died_at: float = 0.0  # monotonic; 0 while it runs (or was not yet found dead)

    @property
    def name(self) -> str:
        return f"{self.process}[{self.index}]"

    def backoff(self) -> float:
        """How long after its death this replica is started again: at once, then 1 s, 2 s, 4 s ...
        while it keeps dying soon after each start."""
        return 0.0 if self.deaths_in_a_row <= 1 else min(2.0 ** (self.deaths_in_a_row - 2), RESTART_BACKOFF_MAX)


def _every(seconds: float, stop: threading.Event, work: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread that runs `work` every `seconds` until `stop` is set; a failed round (the
    file system, a process table) is logged and the next round tries again."""

    def rounds() -> None:
        while not stop.wait(seconds):
            try:
                work()
            except OSError:
                log.exception("%s failed; trying again at the next round", name)

    thread = threading.Thread(target=rounds, name=name, daemon=True)
    thread.start()
    return thread


@dataclass
class Mesh:
    """A whole mesh on this machine, started and stopped by this object (and only what it started)."""

    config_path: Path
    config: MeshConfig
    admin_password: str = ""
    log_level: str = "INFO"
    extra_env: dict[str, str] = field(default_factory=dict)
    # What a replica's command runs under, e.g. ["ip", "netns", "exec", "host1"] (a host per namespace).
    wrap: Callable[[str, int], list[str]] = lambda process, index: []
    replicas: list[Replica] = field(default_factory=list)
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    mail: MailServer | None = None
    front_door: FrontDoor | None = None  # nginx on config.front_door, once the processes serve
    started_in: float = 0.0
    tls: grpc.ChannelCredentials | None = None  # a client's credentials in this mesh (the operator's certificate)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # the replicas, between supervisor and callers
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self, timeout: float = 90.0) -> None:
        began = time.monotonic()
        self._stopping.clear()
        env = self._env = self._infrastructure()
        try:
            for spec in self.config.processes:
                for index, address in enumerate(spec.addresses):
                    self.replicas.append(self._spawn(spec.name, index, address, env))
            self._wait_serving(began + timeout)
            self._open_front_door()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def _open_front_door(self) -> None:
        """The one TLS address for every public service, when the configuration names one (it
        speaks mutual TLS to the processes: a mesh without it has no door)."""
        if not self.config.front_door or not self.config.mutual_tls:
            return
        issue_certificate(pki_of(self.config.data_dir), self.config.front_door)
        self.front_door = FrontDoor(self.config, ALL_MODULES, pki_of(self.config.data_dir))
        self.front_door.start()

    def _infrastructure(self) -> dict[str, str]:
        """Starts what the configuration says is local; the environment every process gets."""
        data_dir = self.config.data_dir
        self.admin_password = ensure_shared_secrets(data_dir, self.admin_password)
        if self.config.mutual_tls:
            issue_mesh_certificates(self.config, CONTEXT_NAMES)
            self.tls = operator_credentials(data_dir)
        redis_url, dsn = self.config.redis, self.config.postgres
        if redis_url == LOCAL:
            self.redis = RedisServer(data_dir / "redis")
            self.redis.start()
            redis_url = self.redis.url
        if dsn == LOCAL:
            self.postgres = PostgresServer(data_dir / "postgres")
            self.postgres.start()
            dsn = self.postgres.database(DATABASE)
        smtp = self.config.smtp
        if smtp == LOCAL:
            self.mail = MailServer(record=data_dir / "mail" / "received.jsonl")
            self.mail.start()
            smtp = self.mail.url
        return {
            **os.environ,
            **self.extra_env,
            "OGPGY_REDIS_URL": redis_url,
            "OGPGY_POSTGRES_DSN": dsn,
            "OGPGY_SMTP_URL": smtp,
            "OGPGY_DATA_DIR": str(data_dir),
            "OGPGY_ADMIN_PASSWORD": self.admin_password,
        }

    def _spawn(self, process: str, index: int, address: str, env: dict[str, str]) -> Replica:
        logs = self.config.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{process}-{index}.log"
        command = [
            *self.wrap(process, index),
            sys.executable,
            "-m",
            "mesh.cli",
            "--log-level",
            self.log_level,
            "--log-format",
            "json",
            "serve",
            process,
            "--replica",
            str(index),
            "--config",
            str(self.config_path),
        ]
        with log_path.open("ab") as output:
            proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return Replica(process, index, address, proc, log_path)

    def _wait_serving(self, deadline: float, replicas: list[Replica] | None = None) -> None:
        waiting = list(self.replicas if replicas is None else replicas)
        while waiting:
            for replica in list(waiting):
                if replica.proc.poll() is not None:
                    tail = replica.log_path.read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"{replica.process}[{replica.index}] exited with {replica.proc.returncode}:\n{tail}")
                if check_serving(replica.address, timeout=0.5, tls=self.tls):
                    waiting.remove(replica)
            if waiting and time.monotonic() > deadline:
                raise TimeoutError(f"not SERVING in time: {', '.join(f'{r.process}[{r.index}]' for r in waiting)}")
            time.sleep(0.05)

    def renew_certificates(self) -> None:
        """Issues every certificate of the mesh again: each server presents its new one to new
        connections (it reads the file again), without a restart; open connections go on. The
        front door is told to read its own again."""
        issue_mesh_certificates(self.config, CONTEXT_NAMES)
        if self.front_door is not None:
            issue_certificate(pki_of(self.config.data_dir), self.config.front_door)
            self.front_door.reload()

    def keep_certificates_fresh(
        self, stop: threading.Event, every: float = LEAF_LIFETIME.total_seconds() / 3
    ) -> threading.Thread:
        """Renews the certificates every `every` seconds until `stop` is set (what `up` runs)."""
        return _every(every, stop, self.renew_certificates, "certificate-renewal")

    def restart(self, process: str, index: int = 0, *, kill: bool = True, timeout: float = 60.0) -> None:
        """kill -9 (or SIGTERM) one replica and start it again on its address; waits until SERVING."""
        with self._lock:
            old = self.replica(process, index)
            if old.proc.poll() is None:
                old.proc.kill() if kill else old.proc.terminate()
                old.proc.wait(timeout=30)
            new = self._spawn(process, index, old.address, self._env)
            self.replicas[self.replicas.index(old)] = new
        self._wait_serving(time.monotonic() + timeout, [new])

    def supervise(self, every: float = 0.5) -> threading.Thread:
        """Starts a replica again when it exits without being asked to (a crash, an OOM kill): at
        once, then after a backoff while it keeps dying; until the mesh stops. Each replica's pid and
        restarts are kept in <data_dir>/supervisor.json for `ogpgy status`."""
        return _every(every, self._stopping, self._revive_the_dead, "mesh-supervisor")

    def _revive_the_dead(self) -> None:
        with self._lock:
            now = time.monotonic()
            for replica in list(self.replicas):
                code = replica.proc.poll()
                if code is None or self._stopping.is_set():
                    continue
                if not replica.died_at:  # just found dead
                    replica.died_at, replica.last_exit = now, code
                    replica.deaths_in_a_row = 1 if now - replica.started > STEADY_SECONDS else replica.deaths_in_a_row + 1
                    log.warning("%s exited with %s: restarting in %.0f s", replica.name, code, replica.backoff())
                if now - replica.died_at < replica.backoff():
                    continue
                new = self._spawn(replica.process, replica.index, replica.address, self._env)
                new.restarts, new.deaths_in_a_row, new.last_exit = (
                    replica.restarts + 1,
                    replica.deaths_in_a_row,
                    replica.last_exit,
                )
                self.replicas[self.replicas.index(replica)] = new
            self._write_supervision()

    def _write_supervision(self) -> None:
        state = {r.name: {"pid": r.proc.pid, "restarts": r.restarts, "running": r.proc.poll() is None} for r in self.replicas}
        path = self.config.data_dir / SUPERVISOR_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
        temporary.replace(path)

    def replica(self, process: str, index: int = 0) -> Replica:
        return next(r for r in self.replicas if r.process == process and r.index == index)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to every process, SIGKILL to any still running after `grace`; then the local servers."""
        self._stopping.set()  # the supervisor restarts nothing from now on
        if self.front_door is not None:  # no new calls come in while the processes drain
            self.front_door.stop()
            self.front_door = None
        with self._lock:
            self._stop_replicas(grace)
        for server in (self.redis, self.postgres, self.mail):
            if server is not None:
                server.stop()
        self.redis = self.postgres = self.mail = None

    def _stop_replicas(self, grace: float) -> None:
        for replica in self.replicas:
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for replica in self.replicas:
            try:
                replica.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s[%d] did not stop in %.0f s: killed", replica.process, replica.index, grace)
                replica.proc.kill()
                replica.proc.wait(timeout=10)
        self.replicas.clear()
