"""The front door of a distributed mesh: one TLS address serving every public service of the bank
over gRPC, Connect (JSON and binary) and gRPC-Web, each call routed by its path to the process that
serves the service.

nginx does the work, not a proxy of our own: `grpc_pass` speaks HTTP/2 over TLS with a client
certificate to a context's gRPC port, and `proxy_pass` does the same over HTTP/1.1 to its Connect
port (gRPC-Web and Connect share their paths with gRPC, so the content type chooses). This module
renders nginx's configuration from the mesh configuration, and runs Debian's nginx for
`ogpgy up --distributed` as Redis and PostgreSQL are run. Kubernetes runs the same configuration
(mesh/kubernetes).

What the door lets through:
- callers need no certificate (users prove who they are with tokens); one that presents a
  certificate of another CA is refused before any call. Plaintext gets nothing.
- the door presents its own identity to the contexts (spiffe://ogpgy.bank/gateway/front-door):
  never a context's, so it cannot act as one, and the servers refuse it the mesh's own RPCs
  (common.grpc.identity.check_gateway), which the door does not route either.
- sizes, header and body timeouts and each address's connections are bounded here first, before
  a byte reaches a context.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from common.di import context_spec
from common.grpc.services import services_of_servicer
from common.net import bare_host, is_wildcard
from common.security.pki import LEAF_LIFETIME, CertificateAuthority, save, spiffe_id
from mesh.config import MeshConfig, ProcessSpec
from mesh.local_servers import LocalServerError, wait_for_port

NAME = "front-door"
IDENTITY = spiffe_id("gateway", NAME)  # what the contexts see of the door
STREAM_SECONDS = 3600  # a server stream (WatchNotifications) may stay open this long through the door
MAX_BODY = "4m"  # a request message, as the contexts' own HTTP limit (Settings.http_max_body_bytes)
# calls in flight from one address (nginx counts each HTTP/2 stream as a connection): a client
# multiplexing many calls on one connection is not refused below this; a flood is
CALLS_PER_ADDRESS = 512


@dataclass(frozen=True)
class Route:
    """The public services of one process kind, and where its replicas serve them."""

    process: str
    services: tuple[str, ...]
    grpc: tuple[str, ...]  # host:port of each replica's gRPC port
    connect: tuple[str, ...]  # host:port of each replica's Connect port
    server_name: str  # the name the replicas' certificate is checked for
    closed: tuple[str, ...] = ()  # method paths of the mesh's own, never routed


@dataclass(frozen=True)
class Files:
    """Where nginx finds what it presents and trusts, and keeps what it writes."""

    certificate: Path  # the door's certificate: to callers, and to the contexts as their client
    key: Path
    ca: Path  # the bank's CA: the contexts' certificates, and any caller's that presents one
    runtime: Path  # pid and temporary files (and the logs, unless they go to stdout and stderr)
    logs_in_runtime: bool = True  # False in a container: the logs go to stdout and stderr


def routes(config: MeshConfig, modules: Iterable[type], server_name: str = "localhost") -> list[Route]:
    """Every process kind that serves one of the bank's contexts (not the outside world's
    simulators), with its services; `server_name` is checked on the replicas' certificates where
    their addresses name no host (loopback: every server certificate holds localhost)."""
    found = []
    by_name = {context_spec(m).name: context_spec(m) for m in modules}
    for spec in config.processes:
        contexts = [by_name[c] for c in spec.contexts if c in by_name and not by_name[c].external]
        bindings = [(b, e) for c in contexts for e in c.exports for b in services_of_servicer(e)]
        if not bindings:
            continue
        closed = tuple(f"/{b.full_name}/{m}" for b, e in bindings for m in getattr(e, "MESH_METHODS", ()))
        grpc = tuple(spec.listen_address(r) for r in range(spec.replica_count)) if not spec.target else (_named(spec.target),)
        connect = tuple(a for a in (spec.connect_address(r) for r in range(spec.replica_count)) if a)
        if spec.target and spec.connect_port:
            connect = (f"{_named(spec.target).rsplit(':', 1)[0]}:{spec.connect_port}",)
        found.append(
            Route(spec.name, tuple(b.full_name for b, _ in bindings), grpc, connect, _server_name(spec, server_name), closed)
        )
    return found


def _named(target: str) -> str:
    """host:port of a gRPC target (dns:///account.ogpgy.svc:7100 -> account.ogpgy.svc:7100)."""
    return target.rsplit("/", 1)[-1]


def _server_name(spec: ProcessSpec, fallback: str) -> str:
    return _named(spec.target).rsplit(":", 1)[0] if spec.target else fallback


def _upstream(name: str, addresses: tuple[str, ...]) -> list[str]:
    return [f"  upstream {name} {{", *(f"    server {a};" for a in addresses), "    keepalive 256;", "  }"]


# What the door answers itself (nginx's own refusals and failures), in each caller's protocol: a
# gRPC or gRPC-Web caller gets the status with no body (trailers only), a Connect caller a Connect
# error; never nginx's HTML page. {nginx status: (gRPC code, Connect code, HTTP status, message)}
_ANSWERS = {
    400: (3, "invalid_argument", 400, "the request is malformed"),
    404: (12, "unimplemented", 404, "no such public method at the front door"),
    413: (8, "resource_exhausted", 429, "the request is over 4 MiB"),
    429: (8, "resource_exhausted", 429, "too many calls in flight from this address"),
    494: (8, "resource_exhausted", 429, "the request headers are too large"),
    495: (16, "unauthenticated", 401, "the client certificate was not issued by the bank CA"),
    502: (14, "unavailable", 503, "the context is not reachable"),
    504: (14, "unavailable", 503, "the context did not answer in time"),
}
_REPLY_TYPES = {"grpc": "application/grpc", "grpcweb": "application/grpc-web+proto"}


def _answers() -> list[str]:
    lines = []
    for status, (grpc_code, code, http, message) in _ANSWERS.items():
        assert "'" not in message and '"' not in message, "quoted in nginx's configuration as it is"
        error = json.dumps({"code": code, "message": message})
        lines += [
            f"    error_page {status} = /.door/{status};",
            f"    location = /.door/{status} {{",
            "      internal;",
            "      client_max_body_size 0;",  # the size check runs again at the redirect: it must not refuse the answer
            f"      if ($door_reply != connect) {{ rewrite ^ /.door/$door_reply-{status} last; }}",
            "      default_type application/json;",
            f"      return {http} '{error}';",
            "    }",
        ]
        for reply, content_type in _REPLY_TYPES.items():
            lines += [
                f"    location = /.door/{reply}-{status} {{",
                "      internal;",
                "      client_max_body_size 0;",
                f"      default_type {content_type};",
                f"      add_header grpc-status {grpc_code} always;",
                f'      add_header grpc-message "{message}" always;',
                '      return 200 "";',
                "    }",
            ]
    return lines


def _location(route: Route) -> list[str]:
    lines = []
    for path in route.closed:
        lines += [f"    location = {path} {{ return 404; }}"]
    for service in route.services:
        lines += [
            f"    location /{service}/ {{",
            f"      grpc_ssl_name {route.server_name};",
            f"      proxy_ssl_name {route.server_name};",
            f"      if ($door_grpc) {{ grpc_pass grpcs://{route.process}_grpc; }}",
            *([f"      proxy_pass https://{route.process}_connect;"] if route.connect else ["      return 415;"]),
            "    }",
        ]
    return lines


_TEMPORARY = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's temporary folders, each in the runtime dir


def _health_server(port: int) -> list[str]:
    """A plaintext listener answering GET /healthz alone, for probes that carry no certificate."""
    return [
        "  server {",
        f"    listen {port};",
        '    location = /healthz { access_log off; default_type text/plain; return 200 "ok\\n"; }',
        "    location / { return 404; }",
        "  }",
    ]


def nginx_conf(
    listen: str, routes: list[Route], files: Files, *, user: str | None = None, health_port: int = 0, proxied_from: str = ""
) -> str:
    """nginx's whole configuration: one server on `listen` (host:port) for every route (and a
    plaintext health listener on `health_port`, when given). With `proxied_from` (a CIDR), callers
    arrive through a TCP proxy there (a Gateway passing TLS through, a load balancer) that says
    who they are in the PROXY protocol: the caller's address is that one, not the proxy's."""
    if proxied_from:
        ipaddress.ip_network(proxied_from)  # a CIDR, or ValueError: it goes into the configuration as it is
    run = files.runtime
    errors, access = (f"{run}/error.log", f"{run}/access.log") if files.logs_in_runtime else ("stderr", "/dev/stdout")
    lines = [
        "# Rendered by ogpgy from the mesh configuration (mesh/front_door.py); edits are lost.",
        *([f"user {user};"] if user else []),
        "daemon off;",
        "worker_processes auto;",
        f"pid {run}/nginx.pid;",
        f"error_log {errors} warn;",
        "events { worker_connections 4096; }",
        "http {",
        f"  access_log {access};",
        *(f"  {kind}_temp_path {run}/{kind}_temp;" for kind in _TEMPORARY),
        "  server_tokens off;",
        f"  client_max_body_size {MAX_BODY};",
        "  client_header_timeout 10s;",
        "  client_body_timeout 30s;",
        "  large_client_header_buffers 4 16k;",
        "  http2_max_concurrent_streams 128;",
        "  limit_conn_zone $binary_remote_addr zone=per_address:1m;",
        # gRPC's content types (application/grpc, +proto, +json, ;params) go to the gRPC port;
        # gRPC-Web's (application/grpc-web...) and Connect's to the Connect port
        '  map $http_content_type $door_grpc { "~*^application/grpc(\\+[^;]*)?(;|$)" 1; default 0; }',
        # how the door's own answers are put: as gRPC, as gRPC-Web, or as Connect errors
        '  map $http_content_type $door_reply { "~*^application/grpc-web" grpcweb; "~*^application/grpc" grpc; default connect; }',
    ]
    for route in routes:
        lines += _upstream(f"{route.process}_grpc", route.grpc)
        if route.connect:
            lines += _upstream(f"{route.process}_connect", route.connect)
    lines += [
        "  server {",
        f"    listen {listen} ssl http2{' proxy_protocol' if proxied_from else ''};",
        *([f"    set_real_ip_from {proxied_from};", "    real_ip_header proxy_protocol;"] if proxied_from else []),
        f"    ssl_certificate {files.certificate};",
        f"    ssl_certificate_key {files.key};",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        f"    ssl_client_certificate {files.ca};",
        "    ssl_verify_client optional;",  # none: a user with a token; another CA's: refused
        f"    limit_conn per_address {CALLS_PER_ADDRESS};",
        "    limit_conn_status 429;",
        f"    grpc_ssl_certificate {files.certificate};",
        f"    grpc_ssl_certificate_key {files.key};",
        f"    grpc_ssl_trusted_certificate {files.ca};",
        "    grpc_ssl_verify on;",
        # who the caller is, as the door saw it (set over any such header the caller sent)
        "    grpc_set_header x-ogpgy-client-address $remote_addr;",
        "    proxy_set_header x-ogpgy-client-address $remote_addr;",
        "    grpc_ssl_protocols TLSv1.2 TLSv1.3;",
        f"    grpc_read_timeout {STREAM_SECONDS}s;",
        f"    grpc_send_timeout {STREAM_SECONDS}s;",
        f"    proxy_ssl_certificate {files.certificate};",
        f"    proxy_ssl_certificate_key {files.key};",
        f"    proxy_ssl_trusted_certificate {files.ca};",
        "    proxy_ssl_verify on;",
        "    proxy_ssl_protocols TLSv1.2 TLSv1.3;",
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_buffering off;",  # a Connect server stream reaches the caller message by message
        # a body reaches the Connect port as it comes, whose own bound on a whole body's time applies
        "    proxy_request_buffering off;",
        f"    proxy_read_timeout {STREAM_SECONDS}s;",
    ]
    for route in routes:
        lines += _location(route)
    if any("ogpgy.identity." in s for r in routes for s in r.services):
        identity = next(r for r in routes if any("ogpgy.identity." in s for s in r.services))
        if identity.connect:
            lines += [
                "    location = /.well-known/jwks.json {",
                f"      proxy_ssl_name {identity.server_name};",
                f"      proxy_pass https://{identity.process}_connect;",
                "    }",
            ]
    lines += [
        *_answers(),
        "    location / { return 404; }",
        "  }",
        *(_health_server(health_port) if health_port else []),
        "}",
        "",
    ]
    return "\n".join(lines)


def issue_certificate(pki: Path, listen: str, lifetime: timedelta = LEAF_LIFETIME) -> None:
    """The door's certificate: its own identity, for the host it listens on (and loopback)."""
    authority = CertificateAuthority.open(pki)
    host = bare_host(listen.rsplit(":", 1)[0])
    # on every address (0.0.0.0): callers reach it by this machine's name (and loopback's)
    hosts = [socket.gethostname()] if is_wildcard(host) else [host]
    save(pki / "gateways", NAME, authority.issue(IDENTITY, hosts=hosts, lifetime=lifetime))


class FrontDoor:
    """nginx serving the mesh of `config` on its front_door address; started and stopped by its
    owner, reloaded (SIGHUP) to present renewed certificates."""

    def __init__(self, config: MeshConfig, modules: Iterable[type], pki: Path) -> None:
        binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
        if binary is None:
            raise LocalServerError("nginx is missing: run scripts/bootstrap (it installs it from Debian)")
        self.binary = binary
        self.address = config.front_door
        self.runtime = config.data_dir / NAME
        self.files = Files(pki / "gateways" / f"{NAME}.pem", pki / "gateways" / f"{NAME}.key", pki / "ca.pem", self.runtime)
        self._routes = routes(config, modules)
        self.proxied_from = config.front_door_proxied_from
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.runtime / "nginx.conf"

    def write(self) -> Path:
        """The configuration, and the folders nginx writes in (its workers' own when run as root)."""
        user = "nobody nogroup" if os.geteuid() == 0 else None
        for kind in _TEMPORARY:
            folder = self.runtime / f"{kind}_temp"
            folder.mkdir(parents=True, exist_ok=True)
            if user:
                nobody = pwd.getpwnam("nobody")
                os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        conf = nginx_conf(self.address, self._routes, self.files, user=user, proxied_from=self.proxied_from)
        self.config_path.write_text(conf, encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 10.0) -> None:
        self.write()
        log = str(self.runtime / "error.log")
        checked = subprocess.run(
            [self.binary, "-t", "-q", "-c", str(self.config_path), "-e", log], capture_output=True, text=True
        )
        if checked.returncode != 0:
            raise LocalServerError(f"nginx refused the front door's configuration {self.config_path}: {checked.stderr.strip()}")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path), "-e", log],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        host, port = self.address.rsplit(":", 1)
        try:
            wait_for_port(int(port), timeout, "the front door (nginx)", bare_host(host))
        except LocalServerError:
            self.stop()
            raise

    def reload(self) -> None:
        """Presents the certificates in the files now to new connections (nginx re-reads them)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGQUIT)  # graceful: calls in flight finish
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
